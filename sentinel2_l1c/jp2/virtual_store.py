"""A virtual Zarr: a manifest of byte ranges in other files, read as a Zarr v3 store.

The manifest of a tile-year is one Parquet file in kerchunk's reference columns: a row per
store key with either ``raw`` bytes (metadata, small coordinate chunks) or a reference
``path``, ``offset``, ``size`` (a chunk that is a byte range of a file). Paths are relative
to the root the referenced files live under, so the same manifest serves that root on any
storage: ``VirtualStore`` resolves them against the obstore store it is given (a folder, a
bucket). Paths are dictionary-encoded and offsets/sizes columnar, so a full-size tile-year
(~244 000 references) stays a few MB. A reference to a JP2 tile can also say where each
full-resolution precinct's packet ends (``prefixes``, from the index's PLT walk), so that
``VirtualStore.get_area`` fetches only the leading bytes an area of the tile needs.

fsspec's reader of kerchunk Parquet (``LazyReferenceMapper``) knows only Zarr v2 metadata,
and icechunk 1.x stores virtual references as absolute URLs; hence this small store.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype

from sentinel2_l1c.jp2.packets import Prefixes
from sentinel2_l1c.storage.files import temp_sibling

SUFFIX = ".parquet"
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("raw", pa.binary()),
        ("path", pa.dictionary(pa.int32(), pa.string())),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("prefixes", pa.list_(pa.int64())),
    ]
)


@dataclass(frozen=True)
class Reference:
    """A chunk that is ``size`` bytes at ``offset`` of the file ``path``; ``prefixes`` says
    how many of its leading bytes an area of it needs (None: all of them)."""

    path: str
    offset: int
    size: int
    prefixes: Prefixes | None = None


@dataclass
class Manifest:
    """Every key of a virtual store: raw bytes or a reference."""

    raw: dict[str, bytes]
    references: dict[str, Reference]

    def metadata(self, key: str) -> dict[str, Any] | None:
        """The Zarr metadata document at ``key`` (``…/zarr.json``); None when there is none."""
        raw = self.raw.get(key)
        return None if raw is None else json.loads(raw)

    def table(self) -> pa.Table:
        keys = [*self.raw, *self.references]
        refs = list(self.references.values())
        blank = [None] * len(self.raw)
        return pa.table(
            {
                "key": keys,
                "raw": [*self.raw.values(), *[None] * len(refs)],
                "path": pa.array([*blank, *(r.path for r in refs)]).dictionary_encode(),
                "offset": [*blank, *(r.offset for r in refs)],
                "size": [*blank, *(r.size for r in refs)],
                "prefixes": [*blank, *(r.prefixes and r.prefixes.flat() for r in refs)],
            },
            schema=SCHEMA,
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> Manifest:
        blank = [None] * table.num_rows  # manifests written before a column existed
        columns = {
            name: table.column(name).to_pylist() if name in table.column_names else blank
            for name in SCHEMA.names
        }
        manifest = cls({}, {})
        for key, raw, path, offset, size, flat in zip(*columns.values(), strict=True):
            if raw is not None:
                manifest.raw[key] = raw
            else:
                found = None if flat is None else Prefixes.from_flat(flat)
                manifest.references[key] = Reference(path, offset, size, found)
        return manifest

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return cls.from_table(pq.read_table(pa.BufferReader(data)))

    def write(self, target: Path) -> None:
        """Write under a temporary name, then rename: a reader sees the old or the new one."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_sibling(target)
        try:
            pq.write_table(self.table(), temp, compression="zstd")
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def files(self) -> set[str]:
        return {reference.path for reference in self.references.values()}


def manifest_name(tile: str, year: int) -> str:
    """The manifest of a tile-year, relative to the format's root."""
    return f"{tile}/{year}{SUFFIX}"


def _span(byte_range: ByteRequest | None, size: int) -> tuple[int, int]:
    """``[start, stop)`` of a Zarr byte request within ``size`` bytes."""
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        return min(byte_range.start, size), min(byte_range.end, size)
    if isinstance(byte_range, OffsetByteRequest):
        return min(byte_range.offset, size), size
    return max(size - byte_range.suffix, 0), size


class VirtualStore(Store):
    """A read-only Zarr store of a manifest; references are read from ``files`` (an obstore
    store of the root their paths are relative to), at most ``connections`` at once."""

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(self, manifest: Manifest, files: Any, connections: int | None = None) -> None:
        super().__init__(read_only=True)
        self.manifest, self.files, self.connections = manifest, files, connections
        self._limits: dict[int, asyncio.Semaphore] = {}

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"VirtualStore({self.files!r})"

    def _limit(self) -> asyncio.Semaphore | None:
        """One semaphore per event loop (zarr's own loop, or a caller's)."""
        if self.connections is None:
            return None
        loop = id(asyncio.get_running_loop())
        return self._limits.setdefault(loop, asyncio.Semaphore(self.connections))

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        raw = self.manifest.raw.get(key)
        if raw is not None:
            start, stop = _span(byte_range, len(raw))
            return prototype.buffer.from_bytes(raw[start:stop])
        reference = self.manifest.references.get(key)
        if reference is None:
            return None
        limit = self._limit()
        if limit is None:
            data = await self._read(reference, byte_range)
        else:
            async with limit:
                data = await self._read(reference, byte_range)
        return prototype.buffer.from_bytes(data)

    async def get_area(
        self, key: str, prototype: BufferPrototype, rows: tuple[int, int], cols: tuple[int, int]
    ) -> Buffer | None:
        """A chunk's leading bytes that decode its ``[rows) × [cols)`` (all of a chunk
        without ``prefixes``): one range request, shorter for areas near the top left."""
        reference = self.manifest.references.get(key)
        if reference is None or reference.prefixes is None:
            return await self.get(key, prototype)
        length = reference.prefixes.needed(rows, cols)
        return await self.get(key, prototype, RangeByteRequest(0, length))

    async def _read(self, reference: Reference, byte_range: ByteRequest | None) -> bytes:
        """The reference's bytes, or only the range of them asked for."""
        start, stop = _span(byte_range, reference.size)
        if stop <= start:
            return b""
        data = await obstore.get_range_async(
            self.files, reference.path, start=reference.offset + start, length=stop - start
        )
        return bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return key in self.manifest.raw or key in self.manifest.references

    async def set(self, key: str, value: Buffer) -> None:
        raise NotImplementedError("a virtual store is read-only")

    async def delete(self, key: str) -> None:
        raise NotImplementedError("a virtual store is read-only")

    def _keys(self) -> list[str]:
        return [*self.manifest.raw, *self.manifest.references]

    async def list(self) -> AsyncIterator[str]:
        for key in self._keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._keys():
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        seen = set()
        for key in self._keys():
            if key.startswith(prefix):
                child = key[len(prefix) :].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child
