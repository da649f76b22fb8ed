"""A format's place on a storage: a local folder or file (``FolderPlace``), or an S3 bucket or
one object in it (``BucketPlace``).

Everything that differs between local files and object storage is a method of the place:
listing, sizes, ranged reads, atomic writes, copies to local files, and the client each
library reads it through (made in ``clients``), so callers never branch on the kind of place.
Every kind passes the same contract tests (``tests/storage/test_place_contract.py``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import botocore.exceptions
import zarr.storage
from fsspec import AbstractFileSystem
from zarr.abc.store import Store

from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.storage import clients
from sentinel2_l1c.storage.files import atomic_write_bytes, copy_file, hidden
from sentinel2_l1c.storage.retry import RetryPolicy, call_with_retries, http_status
from sentinel2_l1c.storage.s3_account import S3Account
from sentinel2_l1c.storage.transfer import (
    download_large,
    download_object,
    list_objects,
    matches_etag,
)

#: where writer locks live, beside a folder store and as a key prefix in a bucket
#: (``cube.writer_lock``): never part of the data
LOCKS = ".dslab-locks"


class Place(ABC):
    """One format on one storage: a tree (folder of files, objects of a bucket) or an archive
    (one file, one object)."""

    @abstractmethod
    def __str__(self) -> str: ...

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def files(self) -> dict[str, int]:
        """Relative name → size of every visible file (or object) of a tree."""

    @abstractmethod
    def size(self) -> int:
        """Bytes of an archive; FileNotFoundError when it is not there."""

    @abstractmethod
    def missing(self, names: list[str]) -> str | None:
        """The first of the tree's files ``names`` that is not there, else None."""

    @abstractmethod
    def read(self, name: str, start: int = 0, stop: int | None = None) -> bytes:
        """Bytes ``[start, stop)`` of the tree's file ``name`` (``""``: the archive itself),
        to its end when ``stop`` is None; FileNotFoundError when it is not there."""

    @abstractmethod
    def write(self, name: str, data: bytes) -> None:
        """Write the tree's file ``name`` whole: readers see the old content or the new, never
        a part."""

    @abstractmethod
    def fetch(self, name: str, size: int, target: Path) -> None:
        """Copy the tree's file ``name`` of ``size`` bytes to the local ``target`` (temporary
        name, size checked, rename)."""

    @abstractmethod
    def fetch_archive(
        self, target: Path, pool: ThreadPoolExecutor, done: Callable[[int], None]
    ) -> None:
        """Copy the archive to the local ``target`` (in parallel pieces where that helps)."""

    @abstractmethod
    def is_current(self, name: str, local: Path) -> bool:
        """Whether ``local``, a copy of ``name`` of the right size, can be kept (the tree's
        ``files`` were listed before)."""

    @abstractmethod
    def local_path(self) -> Path | None:
        """The local file or folder (None for remote places)."""

    @abstractmethod
    def zarr_store(self) -> Store:
        """The tree as a read-only Zarr store (zarr-python's own: a folder, or s3fs)."""

    @abstractmethod
    def create(self) -> None:
        """Make the tree's folder or bucket if it is not there (writers do, before writing)."""

    @abstractmethod
    def zarr_writer(self) -> Store:
        """The tree as a writable, picklable Zarr store (for the converters' block tasks)."""

    @abstractmethod
    def filesystem(self, asynchronous: bool) -> tuple[AbstractFileSystem, str]:
        """An fsspec filesystem holding the archive, and its path there."""

    @abstractmethod
    def obstore(self) -> Any:
        """The tree as an obstore store; ConfigError for an archive."""

    @abstractmethod
    def tensorstore(self, archive: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """tensorstore's key-value store of the tree (``archive`` False) or of the archive, and
        the context it needs; ConfigError when the place is not of that shape."""

    @abstractmethod
    def icechunk_storage(self) -> Any:
        """icechunk's storage of the tree; InputDataError for an archive."""

    @abstractmethod
    def gdal_path(self, name: str) -> str:
        """The path GDAL opens for the tree's file ``name``."""

    def gdal_options(self) -> dict[str, Any]:
        """``rasterio.Env`` settings GDAL needs to read ``gdal_path``s."""
        return {}

    @property
    def retry(self) -> RetryPolicy | None:
        """How reads of a remote place are retried (None: local, a failure is final)."""
        return None

    @property
    def quota(self) -> int | None:
        """Requests a reader may have in flight at once (None: no limit)."""
        return None


@dataclass(frozen=True)
class FolderPlace(Place):
    """A local folder or file: on a network drive or a node's own disk."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def files(self) -> dict[str, int]:
        return {name: stat.st_size for name, stat in self.stats().items()}

    def stats(self) -> dict[str, os.stat_result]:
        """Relative name → stat of every visible file under the folder."""
        found = {}
        for path in self.path.rglob("*"):
            relative = PurePosixPath(path.relative_to(self.path).as_posix())
            if path.is_file() and not hidden(relative):
                found[str(relative)] = path.stat()
        return found

    def size(self) -> int:
        return self.path.stat().st_size

    def missing(self, names: list[str]) -> str | None:
        return next((name for name in names if not (self.path / name).is_file()), None)

    def read(self, name: str, start: int = 0, stop: int | None = None) -> bytes:
        with open(self.path / name, "rb") as file:
            file.seek(start)
            return file.read(-1 if stop is None else max(0, stop - start))

    def write(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.path / name, data)

    def fetch(self, name: str, size: int, target: Path) -> None:
        copy_file(self.path / name, target)
        copied = target.stat().st_size
        if copied != size:  # the source changed while it was listed and copied
            target.unlink()
            raise InputDataError(f"{self.path / name}: copied {copied} bytes, listed {size}")

    def fetch_archive(
        self, target: Path, pool: ThreadPoolExecutor, done: Callable[[int], None]
    ) -> None:
        copy_file(self.path, target)
        done(self.size())

    def is_current(self, name: str, local: Path) -> bool:
        """rsync's quick check: same size and modification time (to the microsecond)."""
        source, stat = (self.path / name).stat() if name else self.path.stat(), local.stat()
        return stat.st_size == source.st_size and abs(stat.st_mtime_ns - source.st_mtime_ns) < 1000

    def local_path(self) -> Path:
        return self.path

    def zarr_store(self) -> Store:
        return clients.local_zarr_store(self.path)

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def zarr_writer(self) -> Store:
        return zarr.storage.LocalStore(self.path)

    def filesystem(self, asynchronous: bool) -> tuple[AbstractFileSystem, str]:
        return clients.local_filesystem(), str(self.path)

    def obstore(self) -> Any:
        return clients.local_obstore(self.path)

    def tensorstore(self, archive: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        return clients.local_tensorstore(self.path, archive), {}

    def icechunk_storage(self) -> Any:
        return clients.local_icechunk(self.path)

    def gdal_path(self, name: str) -> str:
        return str(self.path / name)


@dataclass(frozen=True)
class BucketPlace(Place):
    """Objects of an S3 bucket (``key`` empty), or one object ``key`` in it."""

    account: S3Account
    bucket: str
    key: str = ""
    connections: int = 64  # the client's connection pool: room for any caller's threads
    #: requests in flight at once allowed by the provider (CDSE: 4 per user); None: no limit
    quota: int | None = None
    _clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: key → ETag of the last listing (``files``), for ``is_current``
    _etags: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def client(self) -> Any:
        """A botocore S3 client of the account (made once)."""
        if "client" not in self._clients:
            self._clients["client"] = clients.s3_client(self.account, self.connections)
        return self._clients["client"]

    def _objects(self, prefix: str) -> list[Any]:
        try:
            return list_objects(self.client, self.bucket, prefix, self.account.retry)
        except botocore.exceptions.ClientError as err:
            if http_status(err) == 404:
                return []
            raise

    def _head(self, key: str) -> dict[str, Any] | None:
        def head() -> dict[str, Any] | None:
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except botocore.exceptions.ClientError as err:
                if http_status(err) == 404:
                    return None
                raise

        return call_with_retries(f"HEAD s3://{self.bucket}/{key}", head, self.account.retry)

    def exists(self) -> bool:
        if self.key:
            return self._head(self.key) is not None
        try:
            page = call_with_retries(
                f"list s3://{self.bucket}",
                lambda: self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1),
                self.account.retry,
            )
        except botocore.exceptions.ClientError as err:
            if http_status(err) == 404:
                return False
            raise
        return bool(page.get("Contents"))

    def files(self) -> dict[str, int]:
        objects = [o for o in self._objects("") if not o.key.startswith(f"{LOCKS}/")]
        self._etags.update({o.key: o.etag for o in objects})
        return {o.key: o.size for o in objects}

    def is_current(self, name: str, local: Path) -> bool:
        """Same content as the listed object (its ETag): objects rewritten in place with the
        same size, such as an icechunk branch reference, are fetched again."""
        etag = self._etags.get(name or self.key)
        if etag is None and not name:
            head = self._head(self.key)
            etag = head["ETag"].strip('"') if head else None
        return etag is not None and matches_etag(local, etag)

    def size(self) -> int:
        head = self._head(self.key)
        if head is None:
            raise FileNotFoundError(str(self))
        return int(head["ContentLength"])

    def missing(self, names: list[str]) -> str | None:
        """One request: only the first name is checked (a tree is published as a whole)."""
        return names[0] if names and self._head(names[0]) is None else None

    def read(self, name: str, start: int = 0, stop: int | None = None) -> bytes:
        key = name or self.key
        if stop is not None and stop <= start:
            return b""
        ranged = {"Range": f"bytes={start}-{'' if stop is None else stop - 1}"}

        def get() -> bytes:
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key, **ranged)
            except botocore.exceptions.ClientError as err:
                if http_status(err) == 404:
                    raise FileNotFoundError(f"s3://{self.bucket}/{key}") from None
                if http_status(err) == 416:  # a range past the end: nothing there
                    return b""
                raise
            return answer["Body"].read()

        return call_with_retries(f"GET s3://{self.bucket}/{key}", get, self.account.retry)

    def write(self, name: str, data: bytes) -> None:
        """One PUT, which S3 applies whole; the store checks the bytes it got (Content-MD5)."""
        key = name or self.key
        digest = base64.b64encode(hashlib.md5(data).digest()).decode()
        call_with_retries(
            f"PUT s3://{self.bucket}/{key}",
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentMD5=digest
            ),
            self.account.retry,
        )

    def fetch(self, name: str, size: int, target: Path) -> None:
        """Checked against the listed ETag where it is the object's MD5 (one-part uploads);
        the MD5 is taken of the bytes as they arrive."""
        etag = self._etags.get(name, "")
        md5 = etag if len(etag) == 32 and "-" not in etag else None
        download_object(self.client, self.bucket, name, size, target, self.account.retry, md5=md5)

    def fetch_archive(
        self, target: Path, pool: ThreadPoolExecutor, done: Callable[[int], None]
    ) -> None:
        download_large(
            self.client, self.bucket, self.key, self.size(), target, self.account.retry, pool, done
        )

    def local_path(self) -> None:
        return None

    def zarr_store(self) -> Store:
        return clients.s3_zarr_store(self.account, self.bucket)

    def bucket_exists(self, named_by: str = "") -> bool:
        """Whether the bucket is there; a bucket of someone else's (403) is a ConfigError
        (``named_by``: the setting that names it)."""

        def head() -> bool:
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return True
            except botocore.exceptions.ClientError as err:
                if http_status(err) == 404:
                    return False
                if http_status(err) == 403:
                    choose = f" (choose another name in {named_by})" if named_by else ""
                    raise ConfigError(
                        f"s3://{self.bucket}: refused (HTTP 403): the profile's keys are not "
                        f"accepted, or the bucket belongs to someone else{choose}"
                    ) from None
                raise

        return call_with_retries(f"HEAD s3://{self.bucket}", head, self.account.retry)

    def create(self) -> None:
        if not self.bucket_exists():
            call_with_retries(
                f"create s3://{self.bucket}",
                lambda: self.client.create_bucket(Bucket=self.bucket),
                self.account.retry,
            )

    def zarr_writer(self) -> Store:
        """Through obstore: each chunk or shard one PUT, which S3 applies whole."""
        if self.key:
            raise InputDataError(f"a Zarr store is a folder or a bucket here, not {self}")
        return zarr.storage.ObjectStore(self.obstore(), read_only=False)

    def filesystem(self, asynchronous: bool) -> tuple[AbstractFileSystem, str]:
        return clients.s3_filesystem(self.account, asynchronous), f"{self.bucket}/{self.key}"

    def obstore(self) -> Any:
        if self.key:
            raise ConfigError(f"obstore reads a Zarr tree on a folder or bucket here, not {self}")
        return clients.s3_obstore(self.account, self.bucket)

    def tensorstore(self, archive: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        if bool(self.key) != archive:
            what = (
                "a zipped Zarr file or object" if archive else "a Zarr tree on a folder or bucket"
            )
            raise ConfigError(f"tensorstore reads {what} here, not {self}")
        return clients.s3_tensorstore(self.account, self.bucket, self.key)

    def icechunk_storage(self) -> Any:
        if self.key:
            raise InputDataError(f"an icechunk repository is a folder or a bucket, not {self}")
        return clients.s3_icechunk(self.account, self.bucket)

    def gdal_path(self, name: str) -> str:
        return f"/vsis3/{self.bucket}/{name}"

    def gdal_options(self) -> dict[str, Any]:
        return clients.s3_gdal_options(self.account)

    @property
    def retry(self) -> RetryPolicy:
        return self.account.retry


@dataclass(frozen=True)
class ServicePlace(Place):
    """A coverage service's endpoint (``coverage_service``): it cuts patches on the server and
    holds no files a client could list, copy or open, so every file operation is refused."""

    url: str
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)

    def __str__(self) -> str:
        return self.url

    def _no_files(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"{self.url} is a coverage service: it serves patches, not files")

    def exists(self) -> bool:
        """Whether the service answers at all (one try, the policy's deadlines)."""
        import requests

        policy = self.retry_policy
        try:
            answer = requests.get(self.url, timeout=(policy.connect_timeout, policy.read_timeout))
        except requests.RequestException:
            return False
        return answer.status_code < 500

    def local_path(self) -> None:
        return None

    files = size = missing = read = write = fetch = fetch_archive = is_current = _no_files
    zarr_store = create = zarr_writer = filesystem = obstore = tensorstore = _no_files
    icechunk_storage = gdal_path = _no_files

    @property
    def retry(self) -> RetryPolicy:
        return self.retry_policy
