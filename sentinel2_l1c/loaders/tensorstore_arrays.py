"""A tile-year's band groups read by tensorstore's ``zarr3`` driver, on its own key-value
stores and threads, every band group of a patch requested at once."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import numpy as np
import tensorstore as ts

from sentinel2_l1c.errors import RemoteError
from sentinel2_l1c.loaders.base import (
    Catalogue,
    Patch,
    corrupted_chunk,
    open_band_groups,
    reported,
    slices,
)
from sentinel2_l1c.s2.bands import BAND_GROUPS

#: tensorstore raises these for failed I/O (after its own retries) and bad metadata
ERRORS = (ValueError, RuntimeError)


class _Metadata:
    """A tile-year's group metadata read through tensorstore's key-value store."""

    def __init__(self, root: ts.KvStore, context: ts.Context) -> None:
        self.root, self.context = root, context

    def _json(self, key: str) -> dict[str, Any] | None:
        found = self.root.read(key).result()
        return json.loads(found.value) if found.state == "value" else None

    def _open(self, path: str) -> ts.TensorStore:
        # the opened store itself: its spec as JSON would leave the credentials out
        return ts.open(
            {"driver": "zarr3"}, kvstore=self.root / path, context=self.context, read=True
        ).result()

    def attributes(self, path: str) -> dict[str, Any] | None:
        metadata = self._json(f"{path}/zarr.json")
        return None if metadata is None else metadata.get("attributes", {})

    def time_length(self, path: str, name: str) -> int:
        metadata = self._json(f"{path}/{name}/zarr.json")
        if metadata is None:
            raise KeyError(name)
        return int(metadata["shape"][0])

    def data_json(self, path: str) -> dict[str, Any]:
        return self._json(f"{path}/data/zarr.json") or {}

    def data(self, path: str) -> ts.TensorStore:
        return self._open(f"{path}/data/")

    def first_centres(self, path: str) -> tuple[Any, Any]:
        x, y = (self._open(f"{path}/{axis}/")[:2].read().result() for axis in "xy")
        return x, y


class TensorstoreLoader:
    """A tile-year's band groups through tensorstore; refuses missing or incomplete groups."""

    def __init__(
        self,
        spec: dict[str, Any],
        context: dict[str, Any],
        catalogue: Catalogue,
        where: str,
        made_by: str,
        check_codecs: Callable[[str, list[str]], None],
    ) -> None:
        self.where, self.made_by = where, made_by
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
        with reported(where, ERRORS):
            root = ts.KvStore.open(spec, context=self.context).result()
            metadata = _Metadata(root, self.context)
            opened = open_band_groups(metadata, catalogue, where, made_by, check_codecs)
        self.arrays, self.origins, self.layout = opened.arrays, opened.origins, opened.layout

    def close(self) -> None:
        self.arrays.clear()

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        try:
            with reported(self.where, ERRORS):
                reads = {}
                for group in BAND_GROUPS:  # every band group in flight at once
                    rows, cols = slices(patch, self.origins[group.name], group)
                    reads[group.name] = self.arrays[group.name][:, :, rows, cols].read()
                return {name: read.result() for name, read in reads.items()}
        except RemoteError as err:
            corrupted = CORRUPTED_CHUNK.search(str(err.__cause__))
            if corrupted is None:
                raise
            read = corrupted[1].removeprefix("shard entry ")  # "{chunk}/{shard} in …" if sharded
            chunk = f"chunk {read}" if read.startswith("{") else f"chunk in {read}"
            raise corrupted_chunk(self.where, chunk, err.__cause__, self.made_by) from err


#: tensorstore's error for a chunk (or shard entry) whose crc32c does not match
CORRUPTED_CHUNK = re.compile(r"DATA_LOSS: Error reading (.*?): Digest mismatch")
