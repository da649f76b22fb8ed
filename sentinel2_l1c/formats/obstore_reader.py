"""zarr-python over obstore (Rust's ``object_store``): ``zarr.storage.ObjectStore`` on a local
folder or an S3 bucket, with the account's keys, endpoint, deadlines and retries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from obstore.exceptions import BaseError
from zarr.abc.store import Store
from zarr.storage import ObjectStore

from sentinel2_l1c.formats.store_reader import StoreReader
from sentinel2_l1c.storage.places import Place


@dataclass(frozen=True)
class ObstoreReader(StoreReader):
    name: str = "obstore"
    label: str = "obstore"
    errors: tuple[type[BaseException], ...] = (BaseError,)

    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        return ObjectStore(place.obstore(), read_only=True), lambda: None
