"""stackstac over the COG format's STAC Items (``cog@stackstac``): how Pangeo's STAC users load.

``stackstac.stack`` per band group and patch, its bounds the patch's box in the band group's
grid (the tile's CRS and resolution, nearest resampling: no pixel is resampled), computed with
Dask's threads as many as the other file readers' (``Catalogue.workers``, within the place's
quota). stackstac reads single-band assets only (a multi-band file is refused), while the COG
format holds a band group per file: each band becomes its own asset through GDAL's ``vrt://``
connection string (``vrt://{file}?bands={n}``, one band of the file, no file written), as a
stackstac user of multi-band COGs must do. The Items are the COG format's own
(``formats.cog_stac``); GDAL opens the files with the storage's settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pystac
import stackstac
from rasterio.enums import Resampling
from stackstac.rio_reader import DEFAULT_GDAL_ENV

from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.formats.odc_stac_reader import catalogue_items, of_products
from sentinel2_l1c.loaders.base import Catalogue, Patch, group_corners, patch_bounds
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.storage.places import Place


class _NoSharingWarpOption(logging.Filter):
    """stackstac opens its warped views with ``sharing=False``, which rasterio passes on to
    GDAL's warper too, and GDAL warns at every open that the warper takes no such option."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not support option SHARING" not in record.getMessage()


logging.getLogger("rasterio._env").addFilter(_NoSharingWarpOption())


def single_band_items(items: list[pystac.Item], group: BandGroup) -> list[dict[str, Any]]:
    """The Items with the band group's file split into one asset per band (``vrt://``)."""
    split = []
    for item in items:
        asset = item.assets[group.name]
        bands = asset.extra_fields["raster:bands"]
        document = item.to_dict(include_self_link=False, transform_hrefs=False)
        document["assets"] = {
            band["name"]: {
                "href": f"vrt://{asset.href}?bands={number}",
                "type": asset.media_type,
                "roles": ["data"],
                "raster:bands": [band],
            }
            for number, band in enumerate(bands, 1)
        }
        split.append(document)
    return split


class StackstacLoader:
    """A tile-year's COGs through their STAC Items and stackstac."""

    layout = None

    def __init__(self, items: list[pystac.Item], catalogue: Catalogue, place: Place) -> None:
        self.items = {group.name: single_band_items(items, group) for group in BAND_GROUPS}
        self.workers = min(catalogue.workers, place.quota or catalogue.workers)
        self.epsg = catalogue.products[0].epsg
        self.corners = group_corners(catalogue.products[0])
        self.gdal_env = DEFAULT_GDAL_ENV.updated(always=place.gdal_options())
        self.stack = {
            "library": f"stackstac {stackstac.__version__}",
            "store": f"STAC Items, GDAL vrt:// per band ({type(place).__name__})",
            "engine": f"dask {dask.__version__} threads",
            "threads": str(self.workers),
        }

    def _stacked(self, patch: Patch, group: BandGroup) -> Any:
        bounds = patch_bounds(patch, self.corners[group.name], group)
        res = group.resolution
        return stackstac.stack(
            self.items[group.name], assets=list(group.bands), epsg=self.epsg,
            resolution=res, bounds=bounds, snap_bounds=False, resampling=Resampling.nearest,
            chunksize=patch.size // res,
            dtype=np.dtype("uint16"), fill_value=np.uint16(0), rescale=False, sortby_date=False,
            properties=False, band_coords=False, gdal_env=self.gdal_env,
        )  # fmt: skip

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        stacked = [self._stacked(patch, group) for group in BAND_GROUPS]
        loaded = dask.compute(*stacked, scheduler="threads", num_workers=self.workers)
        return {group.name: np.asarray(a) for group, a in zip(BAND_GROUPS, loaded, strict=True)}

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class StackstacReader(Reader):
    name: str = "stackstac"
    label: str = "stackstac over STAC Items"

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> StackstacLoader:
        items = of_products(catalogue_items(place, catalogue, made_by), place, catalogue, made_by)
        return StackstacLoader(items, catalogue, place)
