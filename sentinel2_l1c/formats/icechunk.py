"""Icechunk: the Zarr format's groups, arrays and layouts in a transactional repository
(``icechunk_repo``), written by ``convert_safe_to_zarr --format icechunk``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import icechunk
from zarr.abc.store import Store
from zarr.core.sync import sync

from sentinel2_l1c.cube.icechunk_repo import read_store
from sentinel2_l1c.formats.base import Packaging
from sentinel2_l1c.formats.store_reader import StoreReader
from sentinel2_l1c.formats.xarray_reader import XarrayReader
from sentinel2_l1c.formats.zarr import ZarrFormat
from sentinel2_l1c.storage.places import Place


@dataclass(frozen=True)
class IcechunkReader(StoreReader):
    """zarr-python over icechunk's store (its own Rust I/O) at the last commit of main."""

    name: str = "icechunk"
    label: str = "icechunk"
    errors: tuple[type[BaseException], ...] = (icechunk.IcechunkError,)

    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        return read_store(place), lambda: None


@dataclass(frozen=True)
class IcechunkFormat(ZarrFormat):
    def object_sizes(self, place: Place) -> dict[str, int]:
        """Chunk sizes from the last commit's manifests under their Zarr keys (the objects
        themselves are named by id in ``chunks/``), without fetching a chunk."""
        store = read_store(place)

        async def sizes() -> dict[str, int]:
            keys = [key async for key in store.list() if "/c/" in key]
            return {key: await store.getsize(key) for key in keys}

        return sync(sizes())


ICECHUNK = IcechunkFormat(
    name="icechunk",
    label="icechunk",
    packaging=Packaging.TREE,
    maker="convert_safe_to_zarr",
    maker_args=("--format", "icechunk"),
    made_from="safe",
    chunk_objects=True,
    readers=(IcechunkReader(), XarrayReader(IcechunkReader())),
    transactional=True,
)
