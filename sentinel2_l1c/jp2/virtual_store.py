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

A manifest also records each referenced file's size, modification time and MD5 (from the
product's ``manifest.safe``) when it was indexed (``FileVersion``): every read checks the
answer's size and ETag (S3: the MD5 of a file uploaded in one part) or modification time
(folders) against them, with no request of its own, so a file changed since has its offsets
refused in one line naming it instead of decoding other pixels.

fsspec's reader of kerchunk Parquet (``LazyReferenceMapper``) knows only Zarr v2 metadata,
and icechunk 1.x stores virtual references as absolute URLs; hence this small store.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from obstore.store import LocalStore
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype

from sentinel2_l1c.errors import InputDataError
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


@dataclass(frozen=True)
class FileVersion:
    """A referenced file as it was indexed: size, modification time (ns) and MD5 (None when
    its product's manifest.safe does not list it)."""

    size: int
    mtime_ns: int
    md5: str | None = None

    def changed(self, meta: Any, local: bool) -> str | None:
        """How an object's metadata (obstore's, of a read) says the file changed; None when
        it does not. ETags of multipart uploads are no MD5: then only the size is known."""
        if meta["size"] != self.size:
            return f"{meta['size']} bytes, indexed with {self.size}"
        if local:
            modified = (meta["last_modified"] - EPOCH) // timedelta(microseconds=1)
            if modified != self.mtime_ns // 1000:
                return f"modified {meta['last_modified'].isoformat()} after it was indexed"
            return None
        etag = (meta.get("e_tag") or "").strip('"')
        if self.md5 is not None and len(etag) == 32 and "-" not in etag and etag != self.md5:
            return f"ETag {etag} is not the indexed MD5 {self.md5}"
        return None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The raw key of the referenced files' versions (JSON; not a Zarr key)
VERSIONS_KEY = ".dslab/files.json"


def changed_file(where: str, path: str, why: str) -> InputDataError:
    return InputDataError(
        f"{where}/{path}: changed since it was indexed ({why}): index it again "
        "(python -m sentinel2_l1c.index_safe --overwrite) or put the indexed file back"
    )


@dataclass
class Manifest:
    """Every key of a virtual store: raw bytes or a reference; and the referenced files'
    versions (empty for manifests written before they were recorded)."""

    raw: dict[str, bytes]
    references: dict[str, Reference]
    versions: dict[str, FileVersion] = field(default_factory=dict)

    def metadata(self, key: str) -> dict[str, Any] | None:
        """The Zarr metadata document at ``key`` (``…/zarr.json``); None when there is none."""
        raw = self.raw.get(key)
        return None if raw is None else json.loads(raw)

    def table(self) -> pa.Table:
        raw = dict(self.raw)
        if self.versions:
            versions = {path: asdict(version) for path, version in self.versions.items()}
            raw[VERSIONS_KEY] = json.dumps(versions, sort_keys=True).encode()
        keys = [*raw, *self.references]
        refs = list(self.references.values())
        blank = [None] * len(raw)
        return pa.table(
            {
                "key": keys,
                "raw": [*raw.values(), *[None] * len(refs)],
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
        versions = json.loads(manifest.raw.pop(VERSIONS_KEY, b"{}"))
        manifest.versions = {path: FileVersion(**fields) for path, fields in versions.items()}
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
    store of the root ``where`` names, their paths relative to it), at most ``connections``
    at once, each read checked against the file's indexed version."""

    supports_writes = False
    supports_deletes = False
    supports_partial_writes = False
    supports_listing = True

    def __init__(
        self, manifest: Manifest, files: Any, connections: int | None = None, where: str = ""
    ) -> None:
        super().__init__(read_only=True)
        self.manifest, self.files, self.connections = manifest, files, connections
        self.where = where or repr(files)
        self.local = isinstance(files, LocalStore)
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
        first = reference.offset + start
        found = await obstore.get_async(
            self.files, reference.path, options={"range": (first, first + stop - start)}
        )
        version = self.manifest.versions.get(reference.path)
        why = None if version is None else version.changed(found.meta, self.local)
        if why is not None:
            raise changed_file(self.where, reference.path, why)
        return bytes(await found.bytes_async())

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
