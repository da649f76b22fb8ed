"""Readers that are zarr-python over a Zarr store made of the place (folder, bucket, archive)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

from zarr.abc.store import Store

from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.loaders.base import Catalogue
from sentinel2_l1c.loaders.zarr_arrays import ZarrLoader
from sentinel2_l1c.storage.places import Place


class StoreReader(Reader):
    """zarr-python over a Zarr store that the reader makes of the place."""

    #: the store client's own errors, reported as one line (s3fs raises OSErrors already)
    errors: tuple[type[BaseException], ...] = ()

    @abstractmethod
    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        """The read-only store, and what to close beside it when done."""

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> ZarrLoader:
        store, close = self.store(place)
        return ZarrLoader(
            store, catalogue, str(place), made_by, on_close=close, errors=self.errors,
            check_codecs=self.check_codecs,
        )  # fmt: skip
