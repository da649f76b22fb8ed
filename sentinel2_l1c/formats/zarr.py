"""Zarr v3 and sharded Zarr v3: groups ``/{tile}/{year}/{band_group}`` (see ``cube.schema``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zarr.abc.store import Store

from sentinel2_l1c.formats.base import Format, Packaging
from sentinel2_l1c.formats.edr_reader import EdrReader
from sentinel2_l1c.formats.obstore_reader import ObstoreReader
from sentinel2_l1c.formats.store_reader import StoreReader
from sentinel2_l1c.formats.tensorstore_reader import TensorstoreReader
from sentinel2_l1c.formats.xarray_reader import XarrayReader, xarray_readers
from sentinel2_l1c.storage.places import Place


@dataclass(frozen=True)
class ZarrReader(StoreReader):
    """The place's own store: a local folder, or s3fs on a bucket (the first version's path)."""

    name: str = "zarr-python"
    label: str = "zarr-python"

    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        return place.zarr_store(), lambda: None


@dataclass(frozen=True)
class ZarrFormat(Format):
    """A Zarr format made by ``convert_safe_to_zarr``, with or without the sharding codec."""

    sharded: bool = False
    layout: str = "first_version"  # of new groups (``cube.layouts``)
    #: an icechunk repository: each tile-year one commit (``icechunk_repo``)
    transactional: bool = False


ZARR = ZarrFormat(
    name="zarr",
    label="Zarr",
    packaging=Packaging.TREE,
    maker="convert_safe_to_zarr",
    made_from="safe",
    chunk_objects=True,
    ideal_reader="obstore",  # the fastest client of zarr-python's stores on S3
    # the default first: tensorstore was the fastest (or within noise) on every storage
    readers=(TensorstoreReader(), ZarrReader(), ObstoreReader(), XarrayReader(ZarrReader())),
)
ZARR_SHARDED = ZarrFormat(
    name="zarr_sharded",
    label="sharded Zarr",
    packaging=Packaging.TREE,
    maker="convert_safe_to_zarr",
    maker_args=("--format", "zarr_sharded"),
    made_from="safe",
    chunk_objects=True,
    readers=(
        TensorstoreReader(),
        ZarrReader(),
        ObstoreReader(),
        *xarray_readers(ZarrReader()),
        EdrReader(),  # on the service storage: a coverage service cuts the patch
    ),  # fmt: skip
    sharded=True,
    # layout_sweep's rule on the calibrated lab (scale 2, 24 dates, allas and lustre): lz4
    # had the most steps on S3 → temp, zstd-5 4 % fewer (a tie) with 12 % fewer bytes, so
    # zstd-5; as few objects as the first version's shards (docs/conversions.md, Codecs)
    layout="chunks_128",
)
