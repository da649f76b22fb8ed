"""Opening a Zarr store read-only, whatever its storage (local folder, S3) and packaging.

One function for every (storage, format, zip reader) combination the benchmark compares:
plain or sharded Zarr as a folder or as S3 objects; zipped Zarr through ``async_zipfs``
(async byte ranges) or through zarr's own ``ZipStore`` (synchronous ``zipfile``), locally or
over an S3 file object.
"""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import s3fs
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore, ZipStore

from .async_zipfs import AsyncZipFileSystem

ZIP_BLOCK = 1 << 20  # read-ahead of the file object under zarr's ZipStore on S3


def s3_filesystem(profile: str, asynchronous: bool = True) -> s3fs.S3FileSystem:
    """s3fs with the boto3 ``profile`` (its endpoint_url and keys); fresh, not cached.

    ``max_concurrency=1``: otherwise s3fs sends a HEAD before every whole-object GET (to split
    large objects), doubling the requests for Zarr chunks.
    """
    return s3fs.S3FileSystem(
        profile=profile, asynchronous=asynchronous, max_concurrency=1, skip_instance_cache=True
    )


class FileObjectZipStore(ZipStore):
    """zarr's ZipStore over any seekable binary file object (it insists on a local path)."""

    def __init__(self, fileobj: Any, name: str = "remote.zip") -> None:
        super().__init__(name, mode="r")
        self.fileobj = fileobj

    def _sync_open(self) -> None:  # ZipStore's, with a file object instead of a path
        self._lock = threading.RLock()
        self._zf = zipfile.ZipFile(self.fileobj, mode="r")
        self._is_open = True


def open_local(path: Path, zipped: bool = False, async_zipfs: bool = True) -> Store:
    """A local Zarr folder, or a local zipped Zarr through async_zipfs or zarr's ZipStore."""
    if not zipped:
        return LocalStore(path, read_only=True)
    if not async_zipfs:
        return ZipStore(path, mode="r")
    fs = AsyncZipFileSystem(
        str(path), target_protocol="file", asynchronous=True, skip_instance_cache=True
    )
    return FsspecStore(fs, read_only=True, path="")


def open_s3(profile: str, bucket: str, key: str | None = None, async_zipfs: bool = True) -> Store:
    """Zarr objects in ``bucket``, or the zipped Zarr object ``key`` in it."""
    if key is None:
        return FsspecStore(s3_filesystem(profile), read_only=True, path=bucket)
    if not async_zipfs:
        fileobj = s3_filesystem(profile, asynchronous=False).open(
            f"{bucket}/{key}", "rb", block_size=ZIP_BLOCK
        )
        return FileObjectZipStore(fileobj, key)
    fs = AsyncZipFileSystem(
        f"{bucket}/{key}", fs=s3_filesystem(profile), asynchronous=True, skip_instance_cache=True
    )
    return FsspecStore(fs, read_only=True, path="")


def close_store(store: Store) -> None:
    """Close a store and the async S3 sessions under it (on zarr's loop, where they live)."""
    from zarr.core.sync import sync

    fs = getattr(store, "fs", None)
    for candidate in (fs, getattr(fs, "fs", None)):
        client = getattr(candidate, "_s3", None)
        if (
            isinstance(candidate, s3fs.S3FileSystem)
            and candidate.asynchronous
            and client is not None
        ):
            sync(client.close())
            candidate._s3 = None
    if isinstance(store, FileObjectZipStore):
        store.fileobj.close()
    store.close()


def gdal_s3_options(profile: str) -> dict[str, Any]:
    """``rasterio.Env`` settings for ``/vsis3/`` with the boto3 ``profile`` (keys and endpoint
    through rasterio's AWSSession), path-style requests, no directory listing on open, a
    block cache for remote reads, and GDAL's own retries of 5xx/429 answers.

    ``GDAL_NUM_THREADS=1``: rasterio sets these options for the calling thread only, and
    JPEG 2000 tiles decoded by GDAL's worker threads would be fetched without them (curl:
    "URL rejected"), leaving those tiles as zeros without an exception. Reads run in parallel
    threads of the caller instead.
    """
    import boto3
    from rasterio.session import AWSSession

    session = boto3.Session(profile_name=profile)
    endpoint = session.client("s3").meta.endpoint_url or ""
    parts = urlsplit(endpoint)
    custom = bool(parts.netloc) and "amazonaws.com" not in parts.netloc
    return {
        "session": AWSSession(session, endpoint_url=parts.netloc if custom else None),
        "AWS_HTTPS": "NO" if parts.scheme == "http" else "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".jp2,.tif",
        "VSI_CACHE": "TRUE",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MAX_RETRY": "5",
        "GDAL_HTTP_RETRY_DELAY": "0.5",
        "GDAL_NUM_THREADS": "1",
    }
