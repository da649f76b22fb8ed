"""xarray over a Zarr format's store, the way Pangeo users read a datacube (``zarr@xarray``).

``xarray.open_zarr`` per band group on the store the format's zarr-python reader opens, the
patch cut with ``isel`` and loaded with Dask's threads (``chunks={}``: one Dask chunk per
stored chunk or shard), or without Dask (``@xarray_nodask``: ``chunks=None``, xarray's lazy
indexing straight into zarr-python). Values are read as stored (no mask or scale applied),
so its patches are checked bit for bit against every other reader's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import dask
import numpy as np
import xarray

from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.loaders.base import Catalogue, Patch, reported, slices
from sentinel2_l1c.loaders.zarr_arrays import DECODE_ERRORS, ZarrLoader
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.storage.places import Place


class XarrayLoader:
    """The band groups as xarray datasets over an opened Zarr loader's store."""

    def __init__(self, zarr_loader: ZarrLoader, catalogue: Catalogue, dask_chunks: bool) -> None:
        self.zarr_loader = zarr_loader
        self.workers = catalogue.workers
        self.layout = zarr_loader.layout
        self.stack = {
            **zarr_loader.stack,
            "library": f"xarray {xarray.__version__} ({zarr_loader.stack['library']})",
            "engine": f"dask {dask.__version__} threads" if dask_chunks else "no dask",
        }
        with reported(zarr_loader.where, zarr_loader.errors):
            self.datasets = {
                group.name: xarray.open_zarr(
                    zarr_loader.store,
                    group=group_path(catalogue.tile, catalogue.year, group),
                    chunks={} if dask_chunks else None,
                    consolidated=False,
                    zarr_format=3,
                    mask_and_scale=False,
                )
                for group in BAND_GROUPS
            }

    @property
    def origins(self) -> dict[str, tuple[float, float]]:
        return self.zarr_loader.origins

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        windows: list[Any] = []
        for group in BAND_GROUPS:
            rows, cols = slices(patch, self.zarr_loader.origins[group.name], group)
            windows.append(self.datasets[group.name]["data"].isel(y=rows, x=cols))
        try:
            with reported(self.zarr_loader.where, self.zarr_loader.errors):
                loaded = dask.compute(*windows, scheduler="threads", num_workers=self.workers)
                pixels = [np.asarray(window.values) for window in loaded]  # read here without Dask
        except DECODE_ERRORS as err:  # a stored chunk that does not decode: zarr-python names it
            raise self.zarr_loader.failed_chunk(patch) or err from err
        return {group.name: p for group, p in zip(BAND_GROUPS, pixels, strict=True)}

    def close(self) -> None:
        for dataset in self.datasets.values():
            dataset.close()
        self.zarr_loader.close()


@dataclass(frozen=True)
class XarrayReader(Reader):
    """xarray over the store of ``base`` (the format's zarr-python reader)."""

    base: Reader
    dask_chunks: bool = True
    name: str = "xarray"
    label: str = "xarray + Dask"
    layered: ClassVar[bool] = True

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> XarrayLoader:
        loader = self.base.open(place, catalogue, made_by, referenced)
        assert isinstance(loader, ZarrLoader), f"{self.base.label} opens no Zarr store"
        try:
            return XarrayLoader(loader, catalogue, self.dask_chunks)
        except BaseException:
            loader.close()
            raise


def xarray_readers(base: Reader) -> tuple[XarrayReader, XarrayReader]:
    """Both ways Pangeo users read: with Dask, and without (``chunks=None``; registered on the
    default format only, to keep the demo's benchmark short)."""
    return (
        XarrayReader(base),
        XarrayReader(base, False, "xarray_nodask", "xarray, no Dask (chunks=None)"),
    )
