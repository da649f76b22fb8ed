"""A read-only async fsspec filesystem over a zip file held in another filesystem.

Made for zipped Zarr on object storage: zarr's ``FsspecStore`` over this filesystem reads
stored entries by exact byte range with as many requests in flight as zarr issues, where
zarr's own ``ZipStore`` reads synchronously. Construction follows fsspec's zip filesystem::

    AsyncZipFileSystem("bucket/store.zip", fs=s3fs_instance)
    fsspec.filesystem("dslabzip", fo="bucket/store.zip", target_protocol="s3", target_options={...})

The ``dslabzip`` protocol is registered with fsspec by this package's entry point (group
``fsspec.specs``), so it is known once the package is installed, without importing it first.

Opening costs one suffix read of the file's tail (no size request on async filesystems) and,
unless the central directory lies in that tail, one read of the central directory; the
index is built once per instance. A stored entry's first read fetches its local header and
the wanted bytes in one request (the header's length is read from the header, never
guessed from the next entry); later reads are exact ranges. Deflated entries are inflated
in bounded pieces, never past their declared size. Corrupt archives raise ``ZipFormatError``. Instances are bound to one event loop, as
s3fs instances are: with zarr, pass ``asynchronous=True`` (and an asynchronous inner fs).
``extract`` unpacks many entries into a local folder with few, large requests.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem, sync_wrapper
from fsspec.spec import AbstractBufferedFile

from sentinel2_l1c.storage.files import is_safe_relative, temp_sibling
from sentinel2_l1c.zipfs.index import (
    DEFLATED,
    LOCAL_SIZE,
    STORED,
    TAIL,
    ZIP64_EOCD_SIZE,
    Entry,
    ZipFormatError,
    find_end_record,
    local_data_offset,
    parse_central_directory,
    parse_zip64_end,
)

PROTOCOL = "dslabzip"
HEADER_SLACK = 256  # local extra fields longer than this cost a second request, once
SPECULATIVE_LIMIT = 1 << 20  # ranges starting later fetch the local header on its own
COPY_CHUNK = 16 << 20
INFLATE_PIECE = 1 << 20  # bytes inflated at a time

__all__ = ["AsyncZipFileSystem", "ZipFormatError"]


class AsyncZipFileSystem(AsyncFileSystem):
    """Read-only view of the zip file ``fo`` in ``fs`` (or in ``target_protocol``)."""

    protocol = PROTOCOL
    root_marker = "/"  # names are listed as "/a/b", like the local filesystem's (zarr relies on it)
    async_impl = True

    def __init__(
        self,
        fo: str,
        fs: fsspec.AbstractFileSystem | None = None,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        coalesce_gap: int = 1 << 16,
        max_concurrency: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if fs is None:
            options = dict(target_options or {})
            protocol = target_protocol or "file"
            if fsspec.get_filesystem_class(protocol).async_impl:
                options.setdefault("asynchronous", self.asynchronous)
            fs = fsspec.filesystem(protocol, **options)
        self.fs = fs
        self.fo = fs._strip_protocol(fo)
        self.coalesce_gap = coalesce_gap
        self.max_concurrency = max_concurrency
        self._files: dict[str, Entry] | None = None
        self._dirs: set[str] = set()
        self._cd_offset = 0
        self._data_offsets: dict[str, int] = {}
        self._header_reads: dict[str, asyncio.Future[tuple[int, bytes]]] = {}
        self._lock: asyncio.Lock | None = None

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        """The entry key: no protocol, no leading or trailing slash ("" is the root)."""
        return path.removeprefix(f"{PROTOCOL}://").strip("/")

    @staticmethod
    def _public(key: str) -> str:
        return f"/{key}"

    # -- reading the underlying file ---------------------------------------------------

    async def _read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the zip file; a short answer means the file is truncated."""
        if end <= start:
            return b""
        if self.fs.async_impl:
            data = await self.fs._cat_file(self.fo, start=start, end=end)
        else:
            data = await asyncio.to_thread(self.fs.cat_file, self.fo, start=start, end=end)
        if len(data) != end - start:
            raise ZipFormatError(f"{self.fo}: short read at offset {start}; truncated archive?")
        return data

    async def _read_tail(self) -> tuple[bytes, int | None]:
        """The last bytes of the file and, if known, the offset of the first of them."""
        if self.fs.async_impl:
            tail = await self.fs._cat_file(self.fo, start=-TAIL)  # a suffix range: no size request
            return tail, (0 if len(tail) < TAIL else None)
        size = await asyncio.to_thread(self.fs.size, self.fo)
        start = max(0, size - TAIL)
        return await asyncio.to_thread(self.fs.cat_file, self.fo, start=start, end=size), start

    # -- the index --------------------------------------------------------------------

    async def _index(self) -> dict[str, Entry]:
        if self._files is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._files is None:
                    await self._build_index()
        assert self._files is not None
        return self._files

    async def _build_index(self) -> None:
        try:
            tail, tail_offset = await self._read_tail()
        except FileNotFoundError:
            raise FileNotFoundError(f"zip file not found: {self.fo}") from None
        try:
            end, zip64_offset = find_end_record(tail, tail_offset)
            if zip64_offset is not None:
                record = await self._read(zip64_offset, zip64_offset + ZIP64_EOCD_SIZE)
                end = parse_zip64_end(record, zip64_offset)
            if tail_offset is None and end.tail_cd_end >= 0:
                tail_offset = end.cd_end - end.tail_cd_end
            if tail_offset is not None and tail_offset <= end.cd_offset:
                first = end.cd_offset - tail_offset
                directory = tail[first : first + end.cd_size]
            else:
                directory = await self._read(end.cd_offset, end.cd_offset + end.cd_size)
            entries = parse_central_directory(directory, end)
        except ZipFormatError as err:
            raise ZipFormatError(f"{self.fo}: {err}") from None
        files, dirs = {}, {""}
        for entry in entries:
            name = entry.name.strip("/")
            parts = name.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if entry.is_dir:
                dirs.add(name)
            else:
                files[name] = entry
        self._cd_offset = end.cd_offset
        self._dirs = dirs
        self._files = files

    async def _entry(self, path: str) -> Entry:
        files = await self._index()
        name = self._strip_protocol(path)
        if name in files:
            return files[name]
        if name in self._dirs:
            raise IsADirectoryError(f"{self.fo}: {name} is a directory")
        raise FileNotFoundError(f"{self.fo}: no entry {name}")

    # -- reading entries --------------------------------------------------------------

    async def _data_start(self, entry: Entry, want: int = 0) -> tuple[int, bytes]:
        """Absolute offset of the entry's data; with the first ``want`` data bytes if read.

        Concurrent callers share one read of the local header.
        """
        offset = self._data_offsets.get(entry.name)
        if offset is not None:
            return entry.header_offset + offset, b""
        pending = self._header_reads.get(entry.name)
        if pending is not None:
            await pending
            return entry.header_offset + self._data_offsets[entry.name], b""
        task = asyncio.ensure_future(self._read_header(entry, want))
        self._header_reads[entry.name] = task
        try:
            return await task
        finally:
            self._header_reads.pop(entry.name, None)

    async def _read_header(self, entry: Entry, want: int) -> tuple[int, bytes]:
        guess = LOCAL_SIZE + entry.name_length + HEADER_SLACK
        stop = min(entry.header_offset + guess + want, self._cd_offset)
        blob = await self._read(entry.header_offset, stop)
        try:
            offset = local_data_offset(blob, entry)
        except ZipFormatError as err:
            raise ZipFormatError(f"{self.fo}: {err}") from None
        if entry.header_offset + offset + entry.compressed_size > self._cd_offset:
            raise ZipFormatError(f"{self.fo}: entry {entry.name!r} runs into the central directory")
        self._data_offsets[entry.name] = offset
        return entry.header_offset + offset, blob[offset:]

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        entry = await self._entry(path)
        first, stop = _slice(start, end, entry.size)
        if first >= stop:
            return b""
        if entry.method == DEFLATED:
            return (await self._inflate(entry))[first:stop]
        if entry.method != STORED:
            raise NotImplementedError(
                f"{self.fo}: entry {entry.name!r} uses compression method {entry.method}; "
                "only stored (0) and deflated (8) entries can be read"
            )
        want = stop if first <= SPECULATIVE_LIMIT else 0
        begin, head = await self._data_start(entry, want)
        if len(head) >= stop:
            return head[first:stop]
        return await self._read(begin + first, begin + stop)

    async def _inflate(self, entry: Entry) -> bytes:
        begin, head = await self._data_start(entry, entry.compressed_size)
        compressed = head[: entry.compressed_size]
        if len(compressed) < entry.compressed_size:
            compressed = await self._read(begin, begin + entry.compressed_size)
        return self._inflate_bytes(entry, compressed)

    async def _cat_ranges(
        self,
        paths: list[str],
        starts: list[int | None] | int | None,
        ends: list[int | None] | int | None,
        max_gap: int | None = None,
        batch_size: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[bytes | Exception]:
        """Many ranges at once: neighbouring ranges of stored entries become one request."""
        count = len(paths)
        starts = starts if isinstance(starts, list) else [starts] * count
        ends = ends if isinstance(ends, list) else [ends] * count
        results: list[bytes | Exception | None] = [None] * count
        absolute: list[tuple[int, int, int]] = []  # (request index, file start, file end)

        async def locate(i: int) -> None:
            try:
                entry = await self._entry(paths[i])
                first, stop = _slice(starts[i], ends[i], entry.size)
                if entry.method != STORED or first >= stop:
                    results[i] = await self._cat_file(paths[i], starts[i], ends[i])
                    return
                begin, _ = await self._data_start(entry)
                absolute.append((i, begin + first, begin + stop))
            except Exception as err:  # reported per range, as fsspec does with on_error="return"
                if on_error != "return":
                    raise
                results[i] = err

        await self._bounded(locate(i) for i in range(count))
        absolute.sort(key=lambda item: item[1])
        merged_starts, merged_ends = _merge(
            [(a[1], a[2]) for a in absolute], self.coalesce_gap if max_gap is None else max_gap
        )
        blobs: list[bytes | Exception] = [b""] * len(merged_starts)

        async def fetch(j: int) -> None:
            try:
                blobs[j] = await self._read(merged_starts[j], merged_ends[j])
            except Exception as err:
                if on_error != "return":
                    raise
                blobs[j] = err

        await self._bounded(fetch(j) for j in range(len(merged_starts)))
        j = 0
        for i, first, stop in absolute:
            while not (merged_starts[j] <= first and stop <= merged_ends[j]):
                j += 1
            blob = blobs[j]
            results[i] = (
                blob
                if isinstance(blob, Exception)
                else blob[first - merged_starts[j] : stop - merged_starts[j]]
            )
        return results  # type: ignore[return-value]

    async def _bounded(self, coroutines: Any) -> None:
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def run(coroutine: Any) -> None:
            async with semaphore:
                await coroutine

        await asyncio.gather(*(run(c) for c in coroutines))

    # -- listing ----------------------------------------------------------------------

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        files = await self._index()
        name = self._strip_protocol(path)
        if name in files:
            entry = files[name]
            return {
                "name": self._public(name),
                "size": entry.size,
                "type": "file",
                "compressed_size": entry.compressed_size,
                "compression": entry.method,
                "crc": entry.crc,
            }
        if name in self._dirs:
            return {"name": self._public(name), "size": 0, "type": "directory"}
        raise FileNotFoundError(f"{self.fo}: no entry {name}")

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        files = await self._index()
        name = self._strip_protocol(path)
        if name in files:
            children = [name]
        elif name in self._dirs:
            prefix = f"{name}/" if name else ""
            children = sorted(
                {
                    p
                    for p in (*files, *self._dirs)
                    if p and p.startswith(prefix) and "/" not in p[len(prefix) :]
                }
            )
        else:
            raise FileNotFoundError(f"{self.fo}: no entry {name}")
        if not detail:
            return [self._public(child) for child in children]
        return [await self._info(child) for child in children]

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        files = await self._index()
        name = self._strip_protocol(path)
        return name in files or name in self._dirs

    async def _isfile(self, path: str) -> bool:
        return self._strip_protocol(path) in await self._index()

    async def _isdir(self, path: str) -> bool:
        await self._index()
        return self._strip_protocol(path) in self._dirs

    async def _find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        files = await self._index()
        name = self._strip_protocol(path)
        if name in files:
            found = [name]
        else:
            if name not in self._dirs:
                return {} if detail else []
            prefix = f"{name}/" if name else ""
            candidates = list(files) + (sorted(self._dirs - {name}) if withdirs else [])
            found = [
                p for p in candidates
                if p.startswith(prefix) and (maxdepth is None or p[len(prefix):].count("/") < maxdepth)
            ]  # fmt: skip
        found.sort()
        if detail:
            return {self._public(p): await self._info(p) for p in found}
        return [self._public(p) for p in found]

    # -- extraction and files ------------------------------------------------------------

    async def _get_file(self, rpath: str, lpath: str, **kwargs: Any) -> None:
        """Extract one entry to the local path ``lpath`` (written whole, then renamed)."""
        if os.path.isdir(lpath):
            return
        entry = await self._entry(rpath)
        target = Path(lpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.partial")
        try:
            with open(temp, "wb") as handle:
                for start in range(0, max(entry.size, 1), COPY_CHUNK):
                    handle.write(
                        await self._cat_file(rpath, start, min(start + COPY_CHUNK, entry.size))
                    )
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    async def _extract(
        self,
        names: list[str],
        root: str,
        done: Callable[[int, int], None] = lambda files, size: None,
        span: int = COPY_CHUNK,
        concurrency: int = 8,
    ) -> None:
        """Write the entries ``names`` as files under the local folder ``root``.

        Neighbouring entries are fetched together, one range of up to ``span`` bytes per
        request and ``concurrency`` requests in flight, so a store of many small chunks costs
        few requests; larger entries come in ``span``-sized ranges. Each file is written
        whole under a temporary name, its CRC-32 checked, then renamed. Entries whose names
        would escape ``root`` are refused before anything is written. ``done(files, bytes)``
        reports progress (from worker threads).
        """
        files = await self._index()
        for name in names:
            if name not in files:
                raise FileNotFoundError(f"{self.fo}: no entry {name}")
            if not is_safe_relative(files[name].name):
                raise ZipFormatError(
                    f"{self.fo}: entry {files[name].name!r} would be written outside the "
                    "target folder or is not a file name; refusing to extract"
                )
        folders = {str(parent) for name in names for parent in PurePosixPath(name).parents}
        both = sorted(folders.intersection(names))
        if both:
            raise ZipFormatError(
                f"{self.fo}: entry {both[0]!r} is both a file and a folder (a link with entries "
                "under it?); refusing to extract"
            )
        ends = _extent_ends(list(files.values()), self._cd_offset)
        groups: list[list[Entry]] = []
        for entry in sorted((files[n] for n in names), key=lambda e: e.header_offset):
            last = groups[-1] if groups else None
            if (
                last is not None
                and ends[entry.header_offset] - last[0].header_offset <= span
                and entry.header_offset - ends[last[-1].header_offset] <= self.coalesce_gap
            ):
                last.append(entry)
            else:
                groups.append([entry])
        semaphore = asyncio.Semaphore(concurrency)

        async def extract_group(group: list[Entry]) -> None:
            async with semaphore:
                first, stop = group[0].header_offset, ends[group[-1].header_offset]
                if len(group) == 1 and stop - first > span:
                    await self._extract_large(group[0], Path(root), span, done)
                    return
                blob = await self._read(first, stop)
                await asyncio.to_thread(self._write_group, blob, first, group, Path(root), done)

        await asyncio.gather(*(extract_group(group) for group in groups))

    extract = sync_wrapper(_extract)

    def _write_group(
        self,
        blob: bytes,
        base: int,
        group: list[Entry],
        root: Path,
        done: Callable[[int, int], None],
    ) -> None:
        for entry in group:
            header = entry.header_offset - base
            try:
                start = header + local_data_offset(blob[header : header + LOCAL_SIZE], entry)
            except ZipFormatError as err:
                raise ZipFormatError(f"{self.fo}: {err}") from None
            data = blob[start : start + entry.compressed_size]
            if len(data) != entry.compressed_size:
                raise ZipFormatError(f"{self.fo}: entry {entry.name!r} runs past its extent")
            if entry.method == DEFLATED:
                data = self._inflate_bytes(entry, data)
            elif entry.method != STORED:
                raise NotImplementedError(
                    f"{self.fo}: entry {entry.name!r} uses compression method {entry.method}"
                )
            self._check_crc(entry, zlib.crc32(data))
            _write_whole(root / entry.name.strip("/"), [data])
            done(1, len(data))

    async def _extract_large(
        self, entry: Entry, root: Path, span: int, done: Callable[[int, int], None]
    ) -> None:
        """One big entry: ranges fetched a few at a time, CRC computed in order."""
        if entry.method != STORED:
            data = await self._cat_file(entry.name)
            self._check_crc(entry, zlib.crc32(data))
            await asyncio.to_thread(_write_whole, root / entry.name.strip("/"), [data])
            done(1, len(data))
            return
        begin, _ = await self._data_start(entry)
        starts = range(0, entry.size, span)

        def read(index: int) -> asyncio.Future[bytes]:
            start = begin + starts[index]
            return asyncio.ensure_future(self._read(start, min(start + span, begin + entry.size)))

        ahead = 4
        reads = [read(i) for i in range(min(ahead, len(starts)))]
        target = root / entry.name.strip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_sibling(target)
        crc = 0
        try:
            with open(temp, "wb") as handle:
                for index in range(len(starts)):
                    data = await reads[index]
                    if index + ahead < len(starts):
                        reads.append(read(index + ahead))
                    crc = zlib.crc32(data, crc)
                    await asyncio.to_thread(handle.write, data)
            self._check_crc(entry, crc)
            os.replace(temp, target)
        except BaseException:
            for pending in reads:
                pending.cancel()
            temp.unlink(missing_ok=True)
            raise
        done(1, entry.size)

    def _inflate_bytes(self, entry: Entry, compressed: bytes) -> bytes:
        """Inflate in bounded pieces, stopping as soon as the output passes the declared size:
        a zip bomb (a few bytes declared, gigabytes inflated) costs no more memory than an
        honest entry."""
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        pieces: list[bytes] = []
        total, pending = 0, compressed
        try:
            while pending or not inflater.eof:
                piece = inflater.decompress(pending, INFLATE_PIECE)
                pending = inflater.unconsumed_tail
                total += len(piece)
                if total > entry.size:
                    raise ZipFormatError(
                        f"{self.fo}: entry {entry.name!r} inflates to more than its declared "
                        f"{entry.size} bytes"
                    )
                pieces.append(piece)
                if not piece and not pending:
                    break  # no more input, and the stream is not complete: checked below
        except zlib.error as err:
            raise ZipFormatError(
                f"{self.fo}: entry {entry.name!r} does not inflate ({err})"
            ) from None
        if total != entry.size:
            raise ZipFormatError(
                f"{self.fo}: entry {entry.name!r} inflates to {total} bytes, not {entry.size}"
            )
        return b"".join(pieces)

    def _check_crc(self, entry: Entry, crc: int) -> None:
        if crc != entry.crc:
            raise ZipFormatError(f"{self.fo}: entry {entry.name!r} fails its CRC-32 check")

    def _open(
        self, path: str, mode: str = "rb", block_size: int | None = None, **kwargs: Any
    ) -> ZipEntryFile:
        if mode != "rb":
            raise NotImplementedError(
                f"{PROTOCOL} is read-only; cannot open {path} with mode {mode!r}"
            )
        return ZipEntryFile(
            self, self._strip_protocol(path), mode, block_size=block_size or "default", **kwargs
        )


class ZipEntryFile(AbstractBufferedFile):
    """A file object over one entry, reading through the filesystem's byte ranges."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end)


def _extent_ends(entries: list[Entry], cd_offset: int) -> dict[int, int]:
    """For each entry's header offset, where its extent ends: the next entry or the directory."""
    offsets = sorted(entry.header_offset for entry in entries)
    return dict(zip(offsets, [*offsets[1:], cd_offset], strict=False))  # the last ends at cd


def _write_whole(path: Path, pieces: list[bytes]) -> None:
    """Write a file under a temporary name beside it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(path)
    try:
        with open(temp, "wb") as handle:
            for piece in pieces:
                handle.write(piece)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _merge(ranges: list[tuple[int, int]], gap: int) -> tuple[list[int], list[int]]:
    """Sorted [start, end) ranges joined where they overlap or lie within ``gap`` bytes."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end in ranges:
        if starts and start - ends[-1] <= gap:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _slice(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """Python slice semantics (negative = from the end), clamped to [0, size]."""
    first = 0 if start is None else (start + size if start < 0 else start)
    stop = size if end is None else (end + size if end < 0 else end)
    return max(0, min(first, size)), max(0, min(stop, size))
