"""Zipped Zarr: a Zarr store packed in one ZIP_STORED archive (``zip_zarr``), and its readers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.implementations.zip import ZipFileSystem
from zarr.abc.store import Store
from zarr.storage import FsspecStore, ZipStore

from sentinel2_l1c.formats.base import Format, Packaging
from sentinel2_l1c.formats.store_reader import StoreReader
from sentinel2_l1c.formats.tensorstore_reader import TensorstoreReader
from sentinel2_l1c.formats.xarray_reader import XarrayReader
from sentinel2_l1c.storage.places import Place
from sentinel2_l1c.zipfs.filesystem import AsyncZipFileSystem

ZIP_BLOCK = 1 << 20  # read-ahead of the file object under zipfile on a remote place


@dataclass(frozen=True)
class AsyncZipReader(StoreReader):
    """zarr over ``async_zipfs``: concurrent exact byte ranges into the archive."""

    name: str = "async_zipfs"
    label: str = "async_zipfs"

    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        fs, path = place.filesystem(asynchronous=True)
        zip_fs = AsyncZipFileSystem(path, fs=fs, asynchronous=True, skip_instance_cache=True)
        return FsspecStore(zip_fs, read_only=True, path=""), lambda: None


@dataclass(frozen=True)
class ZipfileReader(StoreReader):
    """Python's ``zipfile``, synchronous, one entry at a time: zarr's ``ZipStore`` on a local
    file; on a remote one (which ZipStore cannot open) the same ``zipfile`` reads through
    fsspec's zip filesystem over a buffered file object."""

    name: str = "zipstore"
    label: str = "ZipStore"

    def store(self, place: Place) -> tuple[Store, Callable[[], None]]:
        local = place.local_path()
        if local is not None:
            return ZipStore(local, mode="r"), lambda: None
        fs, path = place.filesystem(asynchronous=False)
        fileobj = fs.open(path, "rb", block_size=ZIP_BLOCK)
        zip_fs = AsyncFileSystemWrapper(
            ZipFileSystem(fileobj, skip_instance_cache=True), asynchronous=True
        )
        return FsspecStore(zip_fs, read_only=True, path=""), fileobj.close


ZIPZARR = Format(
    name="zipzarr",
    label="zipped Zarr",
    packaging=Packaging.ARCHIVE,
    maker="zip_zarr",
    made_from="zarr",
    unpacks_to="zarr",
    # the default first: tensorstore's zip store was the fastest on every storage;
    # async_zipfs is the reader for fsspec users (xarray, zarr-python)
    readers=(
        TensorstoreReader(archive=True),
        AsyncZipReader(),
        ZipfileReader(),
        XarrayReader(AsyncZipReader()),
    ),  # fmt: skip
)
