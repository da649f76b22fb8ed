"""odc-stac over STAC Items (``cog@odc-stac``, ``safe@odc-stac``): how Open Data Cube users load.

``odc.stac.load`` per band group and patch, on exactly the tile's own grid (its CRS, the band
group's resolution, the patch's pixel-aligned box; nearest resampling, so no pixel is
resampled), its thread pool as large as the other file readers' (``Catalogue.workers``, within
the place's quota). Where the Items come from is the format's: the COG format's own catalogue
on the place (``formats.cog_stac``), or the SAFE products' Items as the STAC API the products
were found in answers them (CDSE's), their ``s3://eodata/…`` hrefs moved to the place's copy,
as a user of a copy does. GDAL opens the files with the storage's settings (``/vsis3/`` on S3).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import numpy as np
import odc.stac
import pystac
from odc.geo.geobox import GeoBox
from rasterio.transform import Affine

from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.loaders.base import Catalogue, Patch, group_corners, patch_bounds
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.storage.locations import STAC_URL
from sentinel2_l1c.storage.places import Place
from sentinel2_l1c.storage.retry import RetryPolicy

#: The tile-year's Items of a format on a place, hrefs as GDAL opens them there (``made_by``
#: names the command that writes them, for errors)
ItemsOf = Callable[[Place, Catalogue, str], list[pystac.Item]]


def gdal_href(place: Place, name: str) -> str:
    """The file ``name`` of the place as odc-stac hands it to GDAL (absolute paths only)."""
    path = place.gdal_path(name)
    return os.path.abspath(path) if place.local_path() is not None else path


def catalogue_items(place: Place, catalogue: Catalogue, made_by: str) -> list[pystac.Item]:
    """The COG format's Items, from its own catalogue on the place."""
    from sentinel2_l1c.formats.cog_stac import read_items, tile_year_catalogue  # imports COG's

    try:
        return read_items(place.read, lambda n: gdal_href(place, n), catalogue.tile, catalogue.year)
    except FileNotFoundError:
        name = tile_year_catalogue(catalogue.tile, catalogue.year)
        raise InputDataError(f"{place}: no STAC catalogue {name}: run {made_by}") from None


def searched_items(place: Place, catalogue: Catalogue, made_by: str) -> list[pystac.Item]:
    """The products' Items as the STAC API answers a search for the tile-year, each asset's
    ``s3://{bucket}/{key}`` href made the place's file ``key`` (the SAFE folders keep the
    archive's layout on every storage)."""
    from sentinel2_l1c.intake_cdse_s3 import search_items  # the search intake makes

    if not catalogue.stac_url:
        raise ConfigError(f"{place}: no STAC API to find the products' Items in: set {STAC_URL}")
    year = (
        datetime(catalogue.year, 1, 1, tzinfo=UTC),
        datetime(catalogue.year + 1, 1, 1, tzinfo=UTC),
    )
    found = search_items(catalogue.stac_url, catalogue.tile, [year], place.retry or RetryPolicy())
    items = []
    for document in found:
        # without the API's links: pystac would resolve a local path against the self link
        item = pystac.Item.from_dict({**document, "links": []}, preserve_dict=False)
        for asset in item.assets.values():
            asset.href = gdal_href(place, urlsplit(asset.href).path.lstrip("/"))
        items.append(item)
    return items


def of_products(
    items: list[pystac.Item], place: Place, catalogue: Catalogue, made_by: str
) -> list[pystac.Item]:
    """The Items of the catalogue's products, by time; InputDataError naming a product that
    has none."""
    wanted = {product.product_id for product in catalogue.products}
    missing = sorted(wanted - {item.id for item in items})
    if missing:
        raise InputDataError(f"{place}: no STAC Item of {missing[0]}: run {made_by}")
    return sorted((i for i in items if i.id in wanted), key=lambda i: (i.datetime, i.id))


class OdcStacLoader:
    """A tile-year's files through their STAC Items and odc-stac."""

    layout = None

    def __init__(self, items: list[pystac.Item], catalogue: Catalogue, place: Place) -> None:
        self.items = items
        self.workers = min(catalogue.workers, place.quota or catalogue.workers)
        self.crs = catalogue.products[0].crs
        self.corners = group_corners(catalogue.products[0])
        self.stack = {
            "library": f"odc-stac {odc.stac.__version__}",
            "store": f"STAC Items, GDAL ({type(place).__name__})",
            "threads": str(self.workers),
        }
        self.gdal_options = place.gdal_options()

    def _geobox(self, patch: Patch, group: BandGroup) -> GeoBox:
        left, bottom, right, top = patch_bounds(patch, self.corners[group.name], group)
        res = group.resolution
        shape = (round((top - bottom) / res), round((right - left) / res))
        return GeoBox(shape, Affine(res, 0, left, 0, -res, top), self.crs)

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        pixels = {}
        # odc-stac's GDAL settings are one per process, taken by each load: this place's
        odc.stac.configure_rio(cloud_defaults=False, **self.gdal_options)
        for group in BAND_GROUPS:
            loaded = odc.stac.load(
                self.items, bands=list(group.bands), geobox=self._geobox(patch, group),
                resampling="nearest", pool=self.workers, groupby="id",
            )  # fmt: skip
            pixels[group.name] = np.stack([loaded[band].values for band in group.bands], axis=1)
        return pixels

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class OdcStacReader(Reader):
    items_of: ItemsOf = catalogue_items
    name: str = "odc-stac"
    label: str = "odc-stac over STAC Items"

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> OdcStacLoader:
        items = self.items_of(place, catalogue, made_by)
        return OdcStacLoader(of_products(items, place, catalogue, made_by), catalogue, place)
