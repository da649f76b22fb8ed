"""async_zipfs against real archives (Info-ZIP, Python's zipfile, zip_zarr) and broken ones."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import fsspec
import numpy as np
import pytest
import rioxarray  # noqa: F401 - registers .rio
import s3fs
import xarray as xr
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.storage import FsspecStore, ZipStore

from sentinel2_l1c import convert_safe_to_zarr, formats, zip_zarr
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.formats.zarr import StoreReader
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.loaders.zarr_arrays import close_store
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.storage.clients import s3_filesystem
from sentinel2_l1c.storage.places import BucketPlace, FolderPlace
from sentinel2_l1c.zipfs.filesystem import AsyncZipFileSystem
from sentinel2_l1c.zipfs.index import ZipFormatError
from tests.helpers import HOSTILE, SMALL, Archive, hostile_archive, tool

SOURCE_FILES = {
    "zarr.json": b'{"zarr_format": 3}',
    "a/b/c/0": bytes(range(256)) * 40,
    "a/b/c/1": b"",
    "a/big.bin": np.random.default_rng(1).integers(0, 256, 400_000, dtype=np.uint8).tobytes(),
    "ä/öljy.txt": "ÄÖ utf-8 name\n".encode(),
    "top.txt": b"x" * 1000,
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source")
    for name, data in SOURCE_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def info_zip(source: Path, target: Path, *flags: str, streamed: bool = False) -> Path:
    """An archive made by Info-ZIP ``zip`` (streamed to stdout: with data descriptors)."""
    zip_command = tool("zip", "zip")
    if streamed:
        data = subprocess.run(
            [zip_command, "-q", *flags, "-r", "-", "."], cwd=source, check=True, capture_output=True
        ).stdout
        target.write_bytes(data)
    else:
        subprocess.run([zip_command, "-q", *flags, "-r", str(target), "."], cwd=source, check=True)
    return target


def python_zip(
    source: Path, target: Path, compression: int = zipfile.ZIP_STORED, comment: bytes = b""
) -> Path:
    with zipfile.ZipFile(target, "w", compression=compression) as archive:
        archive.comment = comment
        for name in SOURCE_FILES:
            archive.write(source / name, name)
    return target


class Cp437Info(zipfile.ZipInfo):
    """Stores its name in cp437 without the UTF-8 flag, as old DOS tools did."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 - zipfile's name
        return self.filename.encode("cp437"), self.flag_bits


ARCHIVES: dict[str, Callable[[Path, Path], Path]] = {
    "info-zip": lambda s, t: info_zip(s, t, "-0"),
    "info-zip no dir entries": lambda s, t: info_zip(s, t, "-0", "-D"),
    "info-zip forced zip64": lambda s, t: info_zip(s, t, "-0", "-fz"),
    "info-zip streamed (data descriptors)": lambda s, t: info_zip(s, t, "-0", streamed=True),
    "info-zip deflated": lambda s, t: info_zip(s, t, "-6"),
    "python stored with comment": lambda s, t: python_zip(s, t, comment=b"a comment " * 700),
    "python deflated": lambda s, t: python_zip(s, t, zipfile.ZIP_DEFLATED),
}


def open_fs(path: Path) -> AsyncZipFileSystem:
    return AsyncZipFileSystem(str(path), fs=LocalFileSystem(), skip_instance_cache=True)


@pytest.mark.parametrize("kind", list(ARCHIVES))
def test_every_entry_reads_back(kind: str, source: Path, tmp_path: Path) -> None:
    archive = ARCHIVES[kind](source, tmp_path / "a.zip")
    if "streamed" in kind:
        with zipfile.ZipFile(archive) as z:
            assert any(info.flag_bits & 0x08 for info in z.infolist()), "data descriptors present"
    fs = open_fs(archive)
    with zipfile.ZipFile(archive) as reference:  # same name decoding, trusted bytes
        entries = {i.filename: reference.read(i) for i in reference.infolist() if not i.is_dir()}
    assert fs.find("") == sorted(f"/{name}" for name in entries)
    assert {n: d for n, d in entries.items() if n.isascii()} == {
        n: d for n, d in SOURCE_FILES.items() if n.isascii()
    }
    for name, data in entries.items():
        assert fs.cat_file(name) == data, name
        assert fs.cat_file(name, start=3, end=20) == data[3:20]
        assert fs.cat_file(name, start=-7) == data[-7:]
        assert fs.info(name)["size"] == len(data)
        with fs.open(name) as handle:
            assert handle.read() == data
    assert fs.isdir("a/b") and fs.isdir("a") and not fs.isfile("a")
    assert fs.ls("a", detail=False) == ["/a/b", "/a/big.bin"]
    assert fs.ls("/a/", detail=False) == fs.ls("dslabzip://a", detail=False)
    assert fs.exists("top.txt") and not fs.exists("nope")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("nope")


def test_zip_zarr_archive_and_cp437_names(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "cp437.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(Cp437Info("café/résumé.txt"), b"cp437 names")
        archive.writestr("plain.txt", b"ascii")
    fs = open_fs(target)
    assert fs.cat_file("café/résumé.txt") == b"cp437 names"
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist()[0] == "café/résumé.txt"


def test_ranges_are_coalesced_and_concurrent(source: Path, tmp_path: Path) -> None:
    fs = open_fs(python_zip(source, tmp_path / "a.zip"))
    calls: list[tuple[int, int]] = []
    original = fs.fs.cat_file

    def counting(
        path: str, start: int | None = None, end: int | None = None, **kwargs: object
    ) -> bytes:
        calls.append((start or 0, end or 0))
        return original(path, start=start, end=end, **kwargs)

    fs.fs.cat_file = counting  # type: ignore[method-assign]
    big = SOURCE_FILES["a/big.bin"]
    starts = [0, 1000, 5000, 300_000, -10]
    ends = [100, 2000, 6000, 300_500, None]
    paths = ["a/big.bin"] * 5 + ["top.txt"]
    got = fs.cat_ranges(paths, starts + [10], ends + [20])
    assert got[:5] == [big[s:e] for s, e in zip(starts, ends, strict=True)]
    assert got[5] == SOURCE_FILES["top.txt"][10:20]
    opening = 1  # the tail holds the whole small archive
    headers = 2  # one local header per entry, read once
    assert len(calls) <= opening + headers + 3  # neighbours within 64 KiB share a request


def test_open_costs_one_tail_read_and_one_directory_read(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "big.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("padding.bin", os.urandom(300_000))  # pushes the directory out of the tail
        for i in range(2000):
            archive.writestr(f"chunks/{i}", b"x")
    fs = open_fs(target)
    calls = []
    original = fs.fs.cat_file
    fs.fs.cat_file = lambda path, start=None, end=None, **kw: (
        calls.append(start) or original(path, start=start, end=end, **kw)
    )  # type: ignore[method-assign]
    assert len(fs.find("/chunks")) == 2000
    assert len(calls) == 2
    assert fs.cat_file("chunks/1999") == b"x"
    assert len(calls) == 3  # header and data of a stored entry in one request


def test_unsupported_method_is_named(tmp_path: Path) -> None:
    target = tmp_path / "bz.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("x.txt", b"hello" * 100)
    with pytest.raises(NotImplementedError, match=r"entry 'x.txt' uses compression method 12"):
        open_fs(target).cat_file("x.txt")


def test_extract_with_get(source: Path, tmp_path: Path) -> None:
    fs = open_fs(python_zip(source, tmp_path / "a.zip"))
    fs.get("", str(tmp_path / "out"), recursive=True)
    for name, data in SOURCE_FILES.items():
        assert (tmp_path / "out" / name).read_bytes() == data


@pytest.mark.parametrize("kind", list(ARCHIVES))
@pytest.mark.parametrize("span", [1 << 24, 100_000, 4096])
def test_extract_whole_archives(kind: str, span: int, source: Path, tmp_path: Path) -> None:
    """Grouped range reads (16 MiB), and spans that split the 400 kB entry into pieces."""
    fs = open_fs(ARCHIVES[kind](source, tmp_path / "a.zip"))
    names = [name.lstrip("/") for name in fs.find("")]
    done: list[tuple[int, int]] = []
    fs.extract(names, str(tmp_path / "out"), lambda f, b: done.append((f, b)), span)
    with zipfile.ZipFile(tmp_path / "a.zip") as reference:
        for info in reference.infolist():
            if not info.is_dir():
                assert (tmp_path / "out" / info.filename).read_bytes() == reference.read(info)
    assert sum(f for f, _ in done) == len(names)
    assert not [p for p in (tmp_path / "out").rglob(".*")], "no temporary files left"


def test_extract_checks_crc_and_names(source: Path, tmp_path: Path) -> None:
    archive = python_zip(source, tmp_path / "a.zip")
    data = bytearray(archive.read_bytes())
    data[data.index(SOURCE_FILES["top.txt"])] ^= 1  # a flipped bit in a stored entry
    archive.write_bytes(bytes(data))
    fs = open_fs(archive)
    with pytest.raises(ZipFormatError, match="'top.txt' fails its CRC-32 check"):
        fs.extract(["top.txt"], str(tmp_path / "out"))
    assert not (tmp_path / "out" / "top.txt").exists()
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as evil:
        evil.writestr("ok.txt", b"fine")
        evil.writestr("../escaped.txt", b"gotcha")
    fs = open_fs(tmp_path / "evil.zip")
    with pytest.raises(ZipFormatError, match="would be written outside the target folder"):
        fs.extract(["ok.txt", "../escaped.txt"], str(tmp_path / "out2"))
    assert not (tmp_path / "out2").exists() and not (tmp_path / "escaped.txt").exists()


def test_fsspec_construction_by_protocol(source: Path, tmp_path: Path) -> None:
    """Known to fsspec through the package's entry point, without importing it here first."""
    archive = python_zip(source, tmp_path / "a.zip")
    code = (
        "import fsspec, sys; fs = fsspec.filesystem('dslabzip', fo=sys.argv[1], "
        "target_protocol='file'); print(fs.cat_file('top.txt').decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(archive)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == SOURCE_FILES["top.txt"].decode()
    fs = fsspec.filesystem(
        "dslabzip", fo=str(archive), target_protocol="file", skip_instance_cache=True
    )
    assert fs.cat_file("top.txt") == SOURCE_FILES["top.txt"]


def test_empty_archive_is_an_empty_filesystem(tmp_path: Path) -> None:
    zipfile.ZipFile(tmp_path / "empty.zip", "w").close()
    fs = open_fs(tmp_path / "empty.zip")
    assert fs.find("") == [] and fs.ls("", detail=False) == [] and fs.isdir("")
    fs.extract([], str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError):
        fs.cat_file("anything")


# -- corrupt archives -------------------------------------------------------------------


def _eocd(data: bytes) -> int:
    return data.rindex(b"PK\x05\x06")


def _corrupt(kind: str, data: bytearray) -> bytearray:
    eocd = _eocd(bytes(data))
    cd_offset = struct.unpack_from("<I", data, eocd + 16)[0]
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "bad central signature":
        data[cd_offset : cd_offset + 4] = b"XXXX"
    elif kind == "directory outside the file":
        struct.pack_into("<I", data, eocd + 16, len(data) + 1000)
    elif kind == "overlapping entries":
        second = data.index(b"PK\x01\x02", cd_offset + 4)
        struct.pack_into("<I", data, second + 42, 0)  # second entry's header offset = the first's
    elif kind == "multi-disk":
        struct.pack_into("<H", data, eocd + 4, 1)
    elif kind == "bad local header":
        data[0:4] = b"JUNK"
    return data


@pytest.mark.parametrize(
    "kind,message",
    [
        ("truncated", "no end of central directory record"),
        ("bad central signature", "bad central directory entry signature"),
        ("directory outside the file", "short read|truncated"),
        ("overlapping entries", "overlaps"),
        ("multi-disk", "multi-disk"),
        ("bad local header", "bad local header signature"),
    ],
)
def test_corrupt_archives_fail_clearly(
    kind: str, message: str, source: Path, tmp_path: Path
) -> None:
    good = python_zip(source, tmp_path / "good.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(_corrupt(kind, bytearray(good.read_bytes()))))
    fs = open_fs(bad)
    with pytest.raises(ZipFormatError, match=message):
        asyncio.run(asyncio.wait_for(_read_everything(fs), timeout=10))


async def _read_everything(fs: AsyncZipFileSystem) -> None:
    for name in await fs._find(""):
        await fs._cat_file(name)


# -- zipped Zarr through zarr and xarray ------------------------------------------------

ONE_GROUP = (BAND_GROUPS[2],)


@pytest.fixture(scope="module")
def zipped_zarr(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("zipped")
    convert_safe_to_zarr.convert(
        ZarrOptions(archive.root, out / "zarr", layout=SMALL, band_groups=ONE_GROUP), False
    )
    zip_zarr.zip_store(out / "zarr", out / "zarr.zip", show_progress=False)
    return out / "zarr", out / "zarr.zip"


def _assert_same_dataset(store: FsspecStore, plain: Path) -> None:
    path = group_path("35VLH", 2024, ONE_GROUP[0])
    through_zip = xr.open_zarr(store, group=path, consolidated=False)
    direct = xr.open_zarr(plain, group=path, consolidated=False)
    np.testing.assert_array_equal(through_zip.data.values, direct.data.values)
    np.testing.assert_array_equal(through_zip.time.values, direct.time.values)
    assert through_zip.rio.crs == direct.rio.crs


def test_zarr_and_xarray_through_the_zip_on_local_disk(zipped_zarr: tuple[Path, Path]) -> None:
    plain, zipped = zipped_zarr
    fs = AsyncZipFileSystem(
        str(zipped), target_protocol="file", asynchronous=True, skip_instance_cache=True
    )
    _assert_same_dataset(FsspecStore(fs, read_only=True, path=""), plain)


@pytest.fixture(scope="module")
def zip_on_s3(
    zipped_zarr: tuple[Path, Path], local_cdse: LocalCdse, tmp_path_factory
) -> BucketPlace:
    """The zipped store as one object of the lab's S3 storage."""
    _, zipped = zipped_zarr
    client = local_cdse.store.client(local_cdse.storage_user)
    if "zip-test" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="zip-test")
    client.upload_file(str(zipped), "zip-test", "store.zip")
    locations = local_cdse.locations(lab_locations(tmp_path_factory.mktemp("lab")))
    return BucketPlace(locations.s3_account, "zip-test", "store.zip")


def test_zarr_and_xarray_through_the_zip_on_s3(
    zipped_zarr: tuple[Path, Path], zip_on_s3: BucketPlace
) -> None:
    plain, _ = zipped_zarr
    fs = AsyncZipFileSystem(
        "zip-test/store.zip",
        fs=s3_filesystem(zip_on_s3.account, asynchronous=True),
        asynchronous=True,
        skip_instance_cache=True,
    )
    assert isinstance(fs.fs, s3fs.S3FileSystem)
    _assert_same_dataset(FsspecStore(fs, read_only=True, path=""), plain)
    array = zarr.open_array(
        FsspecStore(fs, read_only=True, path=""),
        path=f"{group_path('35VLH', 2024, ONE_GROUP[0])}/data",
        mode="r",
    )
    assert array.shape[0] > 4


def test_every_store_reader_on_every_place(
    zipped_zarr: tuple[Path, Path], zip_on_s3: BucketPlace
) -> None:
    """Every registered reader that opens a Zarr store, on a local file or folder and on S3,
    reads the same array; zarr's own ZipStore locally, Python's zipfile remotely."""
    plain, zipped = zipped_zarr
    path = f"{group_path('35VLH', 2024, ONE_GROUP[0])}/data"
    expected = zarr.open_array(str(plain), path=path, mode="r")[:]
    places = {
        formats.ZARR.name: [FolderPlace(plain)],
        formats.ZIPZARR.name: [FolderPlace(zipped), zip_on_s3],
    }
    opened = 0
    for name, fmt_places in places.items():
        store_readers = [r for r in formats.get(name).readers if isinstance(r, StoreReader)]
        for reader in store_readers:
            for place in fmt_places:
                store, close = reader.store(place)
                if reader.name == "zipstore" and isinstance(place, FolderPlace):
                    assert isinstance(store, ZipStore)
                try:
                    array = zarr.open_array(store, path=path, mode="r")
                    np.testing.assert_array_equal(array[:], expected)
                finally:
                    close_store(store)
                    close()
                opened += 1
    assert opened == 6  # zarr-python and obstore on the tree; async_zipfs and zipstore, twice


# -- hostile archives (issue 16) ------------------------------------------------------------


def patched_sizes(data: bytes, name: bytes, declared: int) -> bytes:
    """The archive with ``name``'s uncompressed size set to ``declared`` in both headers."""
    out = bytearray(data)
    local = out.index(b"PK\x03\x04" + out[4:8])  # the first local header is the entry's
    assert out[local + 30 : local + 30 + len(name)] == name
    struct.pack_into("<I", out, local + 22, declared)
    central = out.index(b"PK\x01\x02")
    struct.pack_into("<I", out, central + 24, declared)
    return bytes(out)


def test_zip_bomb_stops_at_the_declared_size(tmp_path: Path) -> None:
    """A deflated entry declaring 100 bytes that inflates to 64 MB is refused after at most one
    piece of output (it used to be inflated whole, 2.1 GB RSS for a 1 MB bomb)."""
    import tracemalloc

    buffer = tmp_path / "bomb.zip"
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.bin", bytes(64 << 20))
    buffer.write_bytes(patched_sizes(buffer.read_bytes(), b"bomb.bin", 100))
    fs = open_fs(buffer)
    tracemalloc.start()
    try:
        with pytest.raises(ZipFormatError, match="inflates to more than its declared 100 bytes"):
            fs.cat_file("bomb.bin")
        with pytest.raises(ZipFormatError, match="inflates to more than its declared 100 bytes"):
            fs.extract(["bomb.bin"], str(tmp_path / "out"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 1e6:.0f} MB"
    assert not (tmp_path / "out" / "bomb.bin").exists()


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_names_are_refused_before_anything_is_written(kind: str, tmp_path: Path) -> None:
    fs = open_fs(hostile_archive(tmp_path / "h.zip", kind))
    names = [name.lstrip("/") for name in fs.find("")]
    with pytest.raises(ZipFormatError, match=HOSTILE[kind]):
        fs.extract(names, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() and not (Path("/tmp") / "evil.txt").exists()
