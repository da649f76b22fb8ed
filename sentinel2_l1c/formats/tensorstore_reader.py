"""tensorstore (Google's C++ array library): its ``zarr3`` driver over its own key-value stores
(``file``, ``s3``, and ``zip`` on either), decoding chunks on its own threads.

The reader of a zipped Zarr reads the archive's central directory, then byte ranges of the
chunks, all in C++; every band group of a patch is requested at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from typing import Any

import numpy as np
import tensorstore as ts

from ..errors import ConfigError
from ..loaders import Catalogue, Patch, origin, refuse_incomplete, reported, slices
from ..remote import RetryPolicy
from ..storages import BucketPlace, FolderPlace, Place
from ..utils import BAND_GROUPS
from ..zarr_store import complete_per_metadata, group_path, layout_name
from .base import Reader

#: tensorstore raises these for failed I/O (after its own retries) and bad metadata
ERRORS = (ValueError, RuntimeError)


def set_deadlines(retry: RetryPolicy) -> None:
    """tensorstore's HTTP deadlines come from the environment, read once, when its first S3
    request is made: a connection deadline, and giving up on an answer that sends nothing for
    the read timeout (under 1 byte/s). So the first policy of a process holds for all of its
    tensorstore reads (commands have one); a user's own values are kept."""
    os.environ.setdefault(
        "TENSORSTORE_CURL_CONNECT_TIMEOUT_SECONDS", str(round(retry.connect_timeout))
    )
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", str(round(retry.read_timeout)))
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_LIMIT_BYTES", "1")


def kvstore(place: Place, archive: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The key-value store spec of a place (a Zarr tree, or a zip archive holding one) and the
    context it needs; ConfigError for places tensorstore cannot read."""
    context: dict[str, Any] = {}
    if isinstance(place, FolderPlace):
        base: dict[str, Any] = {"driver": "file", "path": f"{place.path}{'' if archive else '/'}"}
    elif isinstance(place, BucketPlace) and bool(place.key) == archive:
        account, keys = place.account, place.account.keys()
        config_file, credentials_file = account.files()
        credentials = {
            "type": "profile",
            "profile": account.profile,
            "config_file": str(config_file),
            "credentials_file": str(credentials_file),
        }
        base = {
            "driver": "s3",
            "bucket": place.bucket,
            "path": place.key,
            "aws_region": keys.region,
            "aws_credentials": credentials,
            **({"endpoint": keys.endpoint_url} if keys.endpoint_url else {}),
        }
        retry = account.retry
        set_deadlines(retry)
        context["s3_request_retries"] = {
            "max_retries": retry.attempts,  # tensorstore counts every attempt
            "initial_delay": f"{retry.first_wait}s",
            "max_delay": f"{retry.max_wait}s",
        }
    else:
        what = "a zipped Zarr file or object" if archive else "a Zarr tree on a folder or bucket"
        raise ConfigError(f"tensorstore reads {what} here, not {place}")
    return ({"driver": "zip", "base": base} if archive else base), context


class TensorstoreLoader:
    """A tile-year's band groups through tensorstore; refuses missing or incomplete groups."""

    def __init__(
        self,
        spec: dict[str, Any],
        context: dict[str, Any],
        catalogue: Catalogue,
        where: str,
        made_by: str,
    ) -> None:
        self.where = where
        self.context = ts.Context(context)
        drivers, inner = ["zarr3"], spec
        while inner is not None:
            drivers.append(inner["driver"])
            inner = inner.get("base")
        self.stack = {
            "library": f"tensorstore {version('tensorstore')}",
            "store": " > ".join(drivers),
            "codec_pipeline": "tensorstore (C++)",
        }
        self.arrays: dict[str, Any] = {}
        self.origins: dict[str, tuple[float, float]] = {}
        self.layout: str | None = None
        with reported(where, ERRORS):
            root = ts.KvStore.open(spec, context=self.context).result()
            for group in BAND_GROUPS:
                path = group_path(catalogue.tile, catalogue.year, group)
                attrs = self._json(root, f"{path}/zarr.json")
                complete = attrs is not None and complete_per_metadata(
                    attrs.get("attributes", {}),
                    partial(self._time_length, root, path),
                )
                refuse_incomplete(where, path, made_by, attrs is not None, complete)
                self.layout = layout_name(attrs.get("attributes", {}))
                self.arrays[group.name] = self._open(root, f"{path}/data/")
                x, y = (self._open(root, f"{path}/{axis}/")[:2].read().result() for axis in "xy")
                self.origins[group.name] = origin(group, x, y)

    def _open(self, root: ts.KvStore, path: str) -> ts.TensorStore:
        # the opened store itself: its spec as JSON would leave the credentials out
        return ts.open(
            {"driver": "zarr3"}, kvstore=root / path, context=self.context, read=True
        ).result()

    @staticmethod
    def _json(root: ts.KvStore, key: str) -> dict[str, Any] | None:
        found = root.read(key).result()
        return json.loads(found.value) if found.state == "value" else None

    def _time_length(self, root: ts.KvStore, path: str, name: str) -> int:
        metadata = self._json(root, f"{path}/{name}/zarr.json")
        if metadata is None:
            raise KeyError(name)
        return int(metadata["shape"][0])

    def close(self) -> None:
        self.arrays.clear()

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        with reported(self.where, ERRORS):
            reads = {}
            for group in BAND_GROUPS:  # every band group in flight at once
                rows, cols = slices(patch, self.origins[group.name], group)
                reads[group.name] = self.arrays[group.name][:, :, rows, cols].read()
            return {name: read.result() for name, read in reads.items()}


@dataclass(frozen=True)
class TensorstoreReader(Reader):
    """tensorstore on a Zarr tree (``archive`` False) or a zipped Zarr (True)."""

    archive: bool = False
    name: str = "tensorstore"
    label: str = "tensorstore"

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> TensorstoreLoader:
        spec, context = kvstore(place, self.archive)
        return TensorstoreLoader(spec, context, catalogue, str(place), made_by)
