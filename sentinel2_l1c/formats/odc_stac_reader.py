"""odc-stac over the COG format's STAC Items (``cog@odc-stac``): how Open Data Cube users load.

``odc.stac.load`` per band group and patch, on exactly the tile's own grid (its CRS, the band
group's resolution, the patch's pixel-aligned box; nearest resampling, so no pixel is
resampled), its thread pool as large as the other file readers' (``Catalogue.workers``). The
Items are read from the place (``formats.cog_stac``); their COGs are opened by GDAL with the
storage's settings (``/vsis3/`` on S3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import odc.stac
import pystac
from odc.geo.geobox import GeoBox
from rasterio.transform import Affine

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.loaders.base import Catalogue, Patch, slices
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.storage.places import Place


class OdcStacLoader:
    """A tile-year's COGs through their STAC Items and odc-stac."""

    layout = None

    def __init__(self, items: list[pystac.Item], catalogue: Catalogue, place: Place) -> None:
        self.items, self.workers = items, catalogue.workers
        first = catalogue.products[0]
        self.crs = first.crs
        self.corners = {
            group.name: (first.grid(group.resolution).ulx, first.grid(group.resolution).uly)
            for group in BAND_GROUPS
        }
        self.stack = {
            "library": f"odc-stac {odc.stac.__version__}",
            "store": f"STAC Items, GDAL ({type(place).__name__})",
        }
        odc.stac.configure_rio(cloud_defaults=False, **place.gdal_options())

    def _geobox(self, patch: Patch, group: BandGroup) -> GeoBox:
        rows, cols = slices(patch, self.corners[group.name], group)
        left, top = self.corners[group.name]
        res = group.resolution
        corner = Affine(res, 0, left + cols.start * res, 0, -res, top - rows.start * res)
        return GeoBox((rows.stop - rows.start, cols.stop - cols.start), corner, self.crs)

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        pixels = {}
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
    name: str = "odc-stac"
    label: str = "odc-stac over STAC Items"

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> OdcStacLoader:
        from sentinel2_l1c.formats.cog_stac import read_items, tile_year_catalogue  # imports COG's

        def locate(name: str) -> str:  # odc-stac takes absolute hrefs only
            path = place.gdal_path(name)
            return os.path.abspath(path) if place.local_path() is not None else path

        try:
            items = read_items(place.read, locate, catalogue.tile, catalogue.year)
        except FileNotFoundError:
            name = tile_year_catalogue(catalogue.tile, catalogue.year)
            raise InputDataError(f"{place}: no STAC catalogue {name}: run {made_by}") from None
        wanted = {product.product_id for product in catalogue.products}
        found = {item.id for item in items}
        if not wanted <= found:
            missing = sorted(wanted - found)[0]
            raise InputDataError(
                f"{place}: the STAC catalogue has no Item {missing}: run {made_by}"
            )
        return OdcStacLoader([i for i in items if i.id in wanted], catalogue, place)
