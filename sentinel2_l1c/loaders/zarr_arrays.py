"""A tile-year's band groups read by zarr-python from any Zarr store (plain, sharded,
zipped, virtual; local or remote), and the ideal reference beside it: only the chunks a patch
touches, fetched and decompressed."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc
from zarr.abc.store import Store
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync
from zarr.storage import FsspecStore

from sentinel2_l1c.cube.layouts import chunk_region, touched_chunks
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.loaders.base import (
    Catalogue,
    Patch,
    corrupted_chunk,
    open_band_groups,
    reported,
    slices,
)
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup


def store_stack(store: Store) -> dict[str, str]:
    """The store and the filesystems under it, outermost first, and zarr's codec pipeline."""
    layers, inner = [type(store).__name__], getattr(store, "fs", None)
    while inner is not None:
        layers.append(type(inner).__name__)
        inner = getattr(inner, "fs", None) or getattr(inner, "sync_fs", None)
    return {
        "library": f"zarr {zarr.__version__}",
        "store": " > ".join(layers),
        "codec_pipeline": str(zarr.config.get("codec_pipeline.path")),
    }


def close_store(store: Store) -> None:
    """Close a store and the async S3 client under an fsspec store (on zarr's loop, where it
    lives; s3fs hands it out through ``set_session``)."""
    fs = getattr(store, "fs", None) if isinstance(store, FsspecStore) else None
    for candidate in (fs, getattr(fs, "fs", None)):
        if candidate is not None and candidate.async_impl and hasattr(candidate, "set_session"):
            client = zarr_sync(candidate.set_session())
            zarr_sync(client.close())
    store.close()


class _Metadata:
    """A tile-year's group metadata read through zarr-python."""

    def __init__(self, root: zarr.Group) -> None:
        self.root = root

    def attributes(self, path: str) -> Mapping[str, Any] | None:
        node = self.root.get(path)
        return None if node is None else node.attrs

    def time_length(self, path: str, name: str) -> int:
        node = self.root[path].get(name)
        if node is None:
            raise KeyError(name)
        return int(node.shape[0])

    def data_json(self, path: str) -> dict[str, Any]:
        key = f"{path}/data/zarr.json"
        found = zarr_sync(self.root.store.get(key, prototype=default_buffer_prototype()))
        return {} if found is None else json.loads(found.to_bytes())

    def data(self, path: str) -> zarr.Array:
        return self.root[f"{path}/data"]

    def first_centres(self, path: str) -> tuple[Any, Any]:
        return self.root[f"{path}/x"][:2], self.root[f"{path}/y"][:2]


class ZarrLoader:
    """A tile-year's band groups from a Zarr store; refuses missing or incomplete groups."""

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        where: str,
        made_by: str,
        on_close: Callable[[], None] = lambda: None,
        errors: tuple[type[BaseException], ...] = (),
        check_codecs: Callable[[str, list[str]], None] = lambda layout, names: None,
    ) -> None:
        self.store = store
        self.on_close = on_close
        self.where, self.errors, self.made_by = where, errors, made_by
        self.stack = store_stack(store)
        with reported(where, errors):
            root = zarr.open_group(store, mode="r", zarr_format=3)
            opened = open_band_groups(_Metadata(root), catalogue, where, made_by, check_codecs)
        self.arrays, self.origins, self.layout = opened.arrays, opened.origins, opened.layout

    def close(self) -> None:
        close_store(self.store)
        self.on_close()

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        """Every band group's window, the groups read at once (one group's last chunks decode
        while the next group's are fetched)."""

        async def read(group: BandGroup) -> np.ndarray:
            rows, cols = slices(patch, self.origins[group.name], group)
            return await self.arrays[group.name].async_array.getitem(
                (slice(None), slice(None), rows, cols)
            )

        async def read_all() -> list[np.ndarray]:
            return await asyncio.gather(*(read(group) for group in BAND_GROUPS))

        try:
            with reported(self.where, self.errors):
                pixels = zarr_sync(read_all())
        except DECODE_ERRORS as err:  # a stored chunk that does not decode: find which
            raise self.failed_chunk(patch) or err from err
        return {group.name: p for group, p in zip(BAND_GROUPS, pixels, strict=True)}

    def failed_chunk(self, patch: Patch) -> InputDataError | None:
        """The error naming the first chunk of the patch that fails to decode on its own."""
        for group in BAND_GROUPS:
            array = self.arrays[group.name]
            window = patch.window(*self.origins[group.name], group.resolution)
            for index in touched_chunks(array.shape, array.chunks, window):
                try:
                    array[chunk_region(array.shape, array.chunks, index)]
                except DECODE_ERRORS as err:
                    return corrupted_chunk(self.where, chunk_name(array, index), err, self.made_by)
        return None


#: what zarr-python's codecs (crc32c, Blosc, …) and zip stores raise for bytes that do not decode
DECODE_ERRORS = (ValueError, RuntimeError, zipfile.BadZipFile)


def chunk_name(array: zarr.Array, index: tuple[int, ...]) -> str:
    """A chunk by its index and the stored object that holds it (its shard, if sharded)."""
    stored = array.shards or array.chunks
    key = array.metadata.encode_chunk_key(
        tuple(i * c // s for i, c, s in zip(index, array.chunks, stored, strict=True))
    )
    if array.shards:
        return f"chunk {tuple(index)} of {array.path} (in its shard {array.path}/{key})"
    return f"chunk {array.path}/{key}"


class IdealLoader:
    """The floor of a Zarr patch load: fetch and decompress only the chunks the patch touches,
    all concurrently (decompression on every core), without slicing or assembling pixels.
    Fetches through the store of its own Zarr loader (opened on the fastest client)."""

    def __init__(self, zarr_loader: ZarrLoader) -> None:
        self.zarr = zarr_loader
        self.stack = {**zarr_loader.stack, "decompression": "numcodecs Blosc in threads"}
        self.layout = zarr_loader.layout
        self.checksums = set()
        for array in zarr_loader.arrays.values():
            codecs = list(array.metadata.codecs)
            if isinstance(codecs[-1], Crc32cCodec):
                self.checksums.add(array.path)
                codecs.pop()
            if not isinstance(codecs[-1], BloscCodec):
                raise InputDataError(
                    f"{array.path}: the ideal reference needs a plain Blosc Zarr, got {codecs}"
                )

    def close(self) -> None:
        self.zarr.close()

    def chunk_keys(self, patch: Patch) -> list[tuple[str, bool]]:
        """The keys of the chunks a patch touches, each with whether it ends in a crc32c."""
        keys = []
        for group in BAND_GROUPS:
            array = self.zarr.arrays[group.name]
            window = patch.window(*self.zarr.origins[group.name], group.resolution)
            checksum = array.path in self.checksums
            for index in touched_chunks(array.shape, array.chunks, window):
                keys.append((f"{array.path}/{array.metadata.encode_chunk_key(index)}", checksum))
        return keys

    def load(self, patch: Patch) -> dict[str, int]:
        """Fetch and decompress; returns counts (chunks, compressed and decompressed bytes)."""
        with reported(self.zarr.where, self.zarr.errors):
            return zarr_sync(self._fetch_and_decode(self.chunk_keys(patch)))

    async def _fetch_and_decode(self, keys: list[tuple[str, bool]]) -> dict[str, int]:
        store, prototype = self.zarr.store, default_buffer_prototype()

        def decode(key: str, raw: bytes, checksum: bool) -> bytes:
            if checksum:
                raw, stored = raw[:-4], raw[-4:]
                if google_crc32c.value(raw).to_bytes(4, "little") != stored:
                    mismatch = ValueError("crc32c checksum mismatch")
                    raise corrupted_chunk(self.zarr.where, f"chunk {key}", mismatch, self.zarr.made_by)  # fmt: skip
            return blosc.decompress(raw)

        async def one(key: str, checksum: bool) -> tuple[int, int]:
            buffer = await store.get(key, prototype=prototype)
            if buffer is None:  # never written: fill value, nothing to read
                return 0, 0
            raw = buffer.to_bytes()
            return len(raw), len(await asyncio.to_thread(decode, key, raw, checksum))

        sizes = await asyncio.gather(*(one(key, checksum) for key, checksum in keys))
        return {
            "chunks": len(keys),
            "compressed_bytes": sum(s[0] for s in sizes),
            "decompressed_bytes": sum(s[1] for s in sizes),
        }
