"""Zarr v3 and sharded Zarr v3: groups ``/{tile}/{year}/{band_group}`` (see ``zarr_store``)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from zarr.abc.store import Store

from ..loaders import Catalogue, ZarrLoader
from ..storages import Place
from .base import Format, Packaging, Reader


class StoreReader(Reader):
    """zarr-python over a Zarr store that the reader makes of the place."""

    @abstractmethod
    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        """The read-only store, and what to close beside it when done."""

    def open(self, place: Place, catalogue: Catalogue, made_by: str) -> ZarrLoader:
        store, close = self.store(place)
        return ZarrLoader(store, catalogue, str(place), made_by, on_close=close)


@dataclass(frozen=True)
class ZarrReader(StoreReader):
    """The place's own store: a local folder, or s3fs on a bucket."""

    name: str = "zarr"
    label: str = "zarr-python"

    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        return place.zarr_store(), lambda: None


@dataclass(frozen=True)
class ZarrFormat(Format):
    """A Zarr format made by ``convert_safe_to_zarr``, with or without the sharding codec."""

    sharded: bool = False


ZARR = ZarrFormat(
    name="zarr",
    label="Zarr",
    packaging=Packaging.TREE,
    maker="convert_safe_to_zarr",
    made_from="safe",
    chunk_objects=True,
    ideal=True,
    readers=(ZarrReader(),),
)
ZARR_SHARDED = ZarrFormat(
    name="zarr_sharded",
    label="sharded Zarr",
    packaging=Packaging.TREE,
    maker="convert_safe_to_zarr",
    maker_args=("--format", "zarr_sharded"),
    made_from="safe",
    chunk_objects=True,
    readers=(ZarrReader(),),
    sharded=True,
)
