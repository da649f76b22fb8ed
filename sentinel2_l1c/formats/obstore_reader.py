"""zarr-python over obstore (Rust's ``object_store``): ``zarr.storage.ObjectStore`` on a local
folder or an S3 bucket, with the account's keys, endpoint, deadlines and retries.

On S3 it skips the s3fs/aiobotocore path (Python request signing, an asyncio event loop per
call chain), which is where most of a chunk read's overhead was."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from obstore.exceptions import BaseError
from obstore.store import LocalStore, S3Store
from zarr.abc.store import Store
from zarr.storage import ObjectStore

from ..errors import ConfigError
from ..storages import BucketPlace, FolderPlace, Place
from .store_reader import StoreReader


def object_store(place: Place) -> Any:  # an obstore store
    """The obstore store of a tree on a folder or bucket; ConfigError for other places."""
    if isinstance(place, FolderPlace):
        return LocalStore(place.path)
    if isinstance(place, BucketPlace) and not place.key:
        keys, retry = place.account.keys(), place.account.retry
        return S3Store(
            place.bucket,
            access_key_id=keys.access_key_id,
            secret_access_key=keys.secret_access_key,
            region=keys.region,
            virtual_hosted_style_request=False,
            **({"session_token": keys.session_token} if keys.session_token else {}),
            **({"endpoint": keys.endpoint_url} if keys.endpoint_url else {}),
            client_options={
                "allow_http": bool(keys.endpoint_url and keys.endpoint_url.startswith("http:")),
                "connect_timeout": timedelta(seconds=retry.connect_timeout),
                "read_timeout": timedelta(seconds=retry.read_timeout),
            },
            retry_config={
                "max_retries": retry.attempts - 1,
                "backoff": {
                    "init_backoff": timedelta(seconds=retry.first_wait),
                    "max_backoff": timedelta(seconds=retry.max_wait),
                    "base": 2.0,
                },
                "retry_timeout": timedelta(seconds=retry.worst_case),
            },
        )
    raise ConfigError(f"obstore reads a Zarr tree on a folder or bucket here, not {place}")


@dataclass(frozen=True)
class ObstoreReader(StoreReader):
    name: str = "obstore"
    label: str = "obstore"
    errors: tuple[type[BaseException], ...] = (BaseError,)

    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        return ObjectStore(object_store(place), read_only=True), lambda: None
