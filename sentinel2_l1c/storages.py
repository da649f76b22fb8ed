"""The storages a format can live on, and a format's place on one of them.

A storage is a registry entry: its name (a key of results files), label, chart colour, the
variables that say where each format lives on it, and the command that puts data there. A
``Place`` is one format on one storage, resolved from ``Locations``: a local file or folder
(``FolderPlace``), or a bucket or one object in it (``BucketPlace``). Everything that differs
between local files and object storage (listing, fetching, opening as a Zarr store, as a
filesystem or through GDAL) is a method of the place, so callers never branch on the storage.

To add a storage: one entry in ``STORAGES`` (a new kind of place if it is neither a folder
nor an S3 bucket) and its variables in ``.env.example``.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from .errors import ConfigError
from .remote import (
    RetryPolicy,
    call_with_retries,
    download_large,
    download_object,
    http_status,
    list_objects,
    matches_etag,
)
from .s3_account import S3Account
from .utils import hidden, remove_tree, temp_sibling

if TYPE_CHECKING:
    from .formats import Format
    from .locations import Locations


# --------------------------------------------------------------------------------------
# Places
# --------------------------------------------------------------------------------------


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
        """The tree as a read-only Zarr store."""

    @abstractmethod
    def filesystem(self, asynchronous: bool) -> tuple[AbstractFileSystem, str]:
        """An fsspec filesystem holding the archive, and its path there."""

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

    def fetch(self, name: str, size: int, target: Path) -> None:
        copy_file(self.path / name, target)

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
        return LocalStore(self.path, read_only=True)

    def filesystem(self, asynchronous: bool) -> tuple[AbstractFileSystem, str]:
        return LocalFileSystem(), str(self.path)

    def gdal_path(self, name: str) -> str:
        return str(self.path / name)


def copy_file(source: Path, target: Path) -> None:
    """Copy contents and modification time under a temporary name, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(target)
    try:
        shutil.copy2(source, temp)
        os.replace(temp, target)
    except BaseException:
        remove_tree(temp)
        raise


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
            self._clients["client"] = self.account.client(self.connections)
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
        objects = self._objects("")
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

    def fetch(self, name: str, size: int, target: Path) -> None:
        download_object(self.client, self.bucket, name, size, target, self.account.retry)

    def fetch_archive(
        self, target: Path, pool: ThreadPoolExecutor, done: Callable[[int], None]
    ) -> None:
        download_large(
            self.client, self.bucket, self.key, self.size(), target, self.account.retry, pool, done
        )

    def local_path(self) -> None:
        return None

    def zarr_store(self) -> Store:
        return FsspecStore(self.account.filesystem(), read_only=True, path=self.bucket)

    def filesystem(self, asynchronous: bool) -> tuple[AbstractFileSystem, str]:
        return self.account.filesystem(asynchronous), f"{self.bucket}/{self.key}"

    def gdal_path(self, name: str) -> str:
        return f"/vsis3/{self.bucket}/{name}"

    def gdal_options(self) -> dict[str, Any]:
        return self.account.gdal_options()

    @property
    def retry(self) -> RetryPolicy:
        return self.account.retry


# --------------------------------------------------------------------------------------
# Storages
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Storage(ABC):
    name: str
    label: str
    colour: str  # of its bars in charts
    description: str
    #: the command that puts formats here; None: each format's own step (intake, converters)
    made_by: str | None = None
    #: where jobs stage data to before training (the node's own disk)
    staging_target: bool = False
    #: ``stage`` copies from it (not from the archive itself: intake fetches from there)
    staging_source: bool = True

    def step_for(self, fmt: Format) -> str:
        """The command that puts ``fmt`` on this storage, for error messages."""
        return self.made_by or fmt.step

    def holds(self, fmt: Format) -> bool:
        """Whether ``fmt`` can be on this storage (every format, but on the archive itself)."""
        return True

    @abstractmethod
    def variables(self, fmt: Format) -> tuple[str, ...]:
        """The variables that say where ``fmt`` lives here."""

    @abstractmethod
    def place(self, locations: Locations, fmt: Format) -> Place: ...

    @abstractmethod
    def lab_settings(self, lab: Path, fmt: Format) -> dict[str, str]:
        """The variables' values in the offline lab folder ``lab``."""


class FolderStorage(Storage):
    """A mounted file system: ``DSLAB_S2L1C_{STORAGE}_{FORMAT}_PATH`` per format."""

    def variables(self, fmt: Format) -> tuple[str, ...]:
        return (f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_PATH",)

    def place(self, locations: Locations, fmt: Format) -> FolderPlace:
        return FolderPlace(self.path(locations, fmt))

    def path(self, locations: Locations, fmt: Format) -> Path:
        """The folder (or, for an archive, the file) of ``fmt`` here."""
        return locations.path(self.variables(fmt)[0])

    def lab_settings(self, lab: Path, fmt: Format) -> dict[str, str]:
        return {self.variables(fmt)[0]: str(lab / self.name / fmt.file_name)}


class BucketStorage(Storage):
    """S3 object storage: a bucket per format, ``DSLAB_S2L1C_S3_{FORMAT}_BUCKET``, and for an
    archive its object key, ``DSLAB_S2L1C_S3_{FORMAT}_KEY`` (default: its file name)."""

    def variables(self, fmt: Format) -> tuple[str, ...]:
        bucket = f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_BUCKET"
        if not fmt.is_archive:
            return (bucket,)
        return bucket, f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_KEY"

    def place(self, locations: Locations, fmt: Format) -> BucketPlace:
        variables = self.variables(fmt)
        bucket = locations.bucket(variables[0])
        key = locations.text(variables[1], fmt.file_name) if fmt.is_archive else ""
        return BucketPlace(locations.s3_account, bucket, key)

    def lab_settings(self, lab: Path, fmt: Format) -> dict[str, str]:
        variables = self.variables(fmt)
        settings = {variables[0]: f"sentinel2-l1c-{fmt.name.replace('_', '-')}"}
        if fmt.is_archive:
            settings[variables[1]] = fmt.file_name
        return settings


class ArchiveStorage(Storage):
    """The archive read where it is (CDSE's ``eodata`` bucket): the format intake fetches
    from it, in its bucket ``DSLAB_S2L1C_{STORAGE}_{FORMAT}_BUCKET`` through the CDSE account
    within its connection quota, and the virtual formats whose chunks are in those files, with
    their manifests in a folder ``DSLAB_S2L1C_{STORAGE}_{FORMAT}_PATH`` (the lab: the network
    drive's)."""

    #: the archive's bucket (CDSE's, and the lab's stand-in)
    bucket: str = "eodata"

    def holds(self, fmt: Format) -> bool:
        return fmt.made_from is None or fmt.references is not None

    def _refuse(self, fmt: Format) -> None:
        if not self.holds(fmt):
            raise ConfigError(
                f"{fmt.name} is not on {self.name}: it holds the archive's own files and the "
                "virtual formats made of them"
            )

    def variables(self, fmt: Format) -> tuple[str, ...]:
        kind = "PATH" if fmt.references is not None else "BUCKET"
        return (f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_{kind}",)

    def place(self, locations: Locations, fmt: Format) -> Place:
        self._refuse(fmt)
        variable = self.variables(fmt)[0]
        if fmt.references is not None:
            return FolderPlace(locations.path(variable))
        quota = locations.cdse_connections
        return BucketPlace(
            locations.cdse_account, locations.text(variable, self.bucket), quota=quota
        )

    def lab_settings(self, lab: Path, fmt: Format) -> dict[str, str]:
        if not self.holds(fmt):
            return {}
        if fmt.references is not None:  # the manifests on the lab's network drive
            return {self.variables(fmt)[0]: str(lab / NETWORK.name / fmt.file_name)}
        return {self.variables(fmt)[0]: self.bucket}


NETWORK = FolderStorage(
    "network", "network", "#4488ff", "the shared network drive (Puhti: Lustre /scratch)"
)
TEMP = FolderStorage(
    "temp",
    "temp",
    "#33aa66",
    "the compute node's own disk (Puhti: NVMe, $LOCAL_SCRATCH)",
    made_by="python -m sentinel2_l1c.stage",
    staging_target=True,
)
S3 = BucketStorage(
    "s3",
    "S3",
    "#ee8833",
    "S3 object storage (Puhti: Allas), boto3 profile $DSLAB_S2L1C_S3_PROFILE",
    made_by="python -m sentinel2_l1c.publish_s3",
)

CDSE = ArchiveStorage(
    "cdse",
    "CDSE",
    "#aa3377",
    "the SAFE files where they are, in CDSE's eodata bucket (profile $DSLAB_S2L1C_CDSE_PROFILE, "
    "at most $DSLAB_S2L1C_CDSE_CONNECTIONS connections)",
    staging_source=False,
)

#: Every storage, in the order of results and charts.
STORAGES: dict[str, Storage] = {storage.name: storage for storage in (NETWORK, TEMP, S3, CDSE)}


def get(name: str) -> Storage:
    """The storage called ``name``; ConfigError naming the choices otherwise."""
    try:
        return STORAGES[name]
    except KeyError:
        raise ConfigError(f"unknown storage {name!r}; choose from {', '.join(STORAGES)}") from None


def label(name: str) -> str:
    """The storage's label, or its name if it is not (or no longer) registered."""
    return STORAGES[name].label if name in STORAGES else name


def staging_target() -> FolderStorage:
    """The storage jobs stage to (a node's own disk: a folder storage)."""
    target = next(storage for storage in STORAGES.values() if storage.staging_target)
    assert isinstance(target, FolderStorage), f"{target.name} must be a folder storage"
    return target
