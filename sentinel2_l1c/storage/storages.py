"""The storage registry: every storage a format can live on.

A storage is a registry entry: its name (a key of results files), label, chart colour, the
variables that say where each format lives on it, and the command that puts data there. It
resolves a format's ``Place`` (``places``) from ``Locations``. It knows a format only by what
``Stored`` names, so this layer never imports the formats.

To add a storage: one entry in ``STORAGES`` (a new kind of place in ``places`` if it is
neither a folder nor an S3 bucket) and its variables in ``.env.example``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.places import BucketPlace, FolderPlace, Place, ServicePlace


class Stored(Protocol):
    """What a storage needs to know of a format (``formats.Format`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def file_name(self) -> str:
        """Its default folder (or file) name on a storage."""

    @property
    def is_archive(self) -> bool: ...

    @property
    def step(self) -> str:
        """The command that makes it on the network drive."""

    @property
    def made_from(self) -> str | None: ...

    @property
    def references(self) -> str | None: ...


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
    #: a server cuts the patches (a coverage service): read only by readers that ask one
    #: (``Reader.asks_service``), and they read nothing else
    cuts_patches: bool = False

    def step_for(self, fmt: Stored) -> str:
        """The command that puts ``fmt`` on this storage, for error messages."""
        return self.made_by or fmt.step

    def holds(self, fmt: Stored) -> bool:
        """Whether ``fmt`` can be on this storage (every format, but on the archive itself)."""
        return True

    @abstractmethod
    def variables(self, fmt: Stored) -> tuple[str, ...]:
        """The variables that say where ``fmt`` lives here."""

    @abstractmethod
    def place(self, locations: Locations, fmt: Stored) -> Place: ...

    @abstractmethod
    def lab_settings(self, lab: Path, fmt: Stored) -> dict[str, str]:
        """The variables' values in the offline lab folder ``lab``."""


class FolderStorage(Storage):
    """A mounted file system: ``DSLAB_S2L1C_{STORAGE}_{FORMAT}_PATH`` per format."""

    def variables(self, fmt: Stored) -> tuple[str, ...]:
        return (f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_PATH",)

    def place(self, locations: Locations, fmt: Stored) -> FolderPlace:
        return FolderPlace(self.path(locations, fmt))

    def path(self, locations: Locations, fmt: Stored) -> Path:
        """The folder (or, for an archive, the file) of ``fmt`` here."""
        return locations.path(self.variables(fmt)[0])

    def lab_settings(self, lab: Path, fmt: Stored) -> dict[str, str]:
        return {self.variables(fmt)[0]: str(lab / self.name / fmt.file_name)}


class BucketStorage(Storage):
    """S3 object storage: a bucket per format, ``DSLAB_S2L1C_S3_{FORMAT}_BUCKET``, and for an
    archive its object key, ``DSLAB_S2L1C_S3_{FORMAT}_KEY`` (default: its file name)."""

    def variables(self, fmt: Stored) -> tuple[str, ...]:
        bucket = f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_BUCKET"
        if not fmt.is_archive:
            return (bucket,)
        return bucket, f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_KEY"

    def place(self, locations: Locations, fmt: Stored) -> BucketPlace:
        variables = self.variables(fmt)
        bucket = locations.bucket(variables[0])
        key = locations.text(variables[1], fmt.file_name) if fmt.is_archive else ""
        return BucketPlace(locations.s3_account, bucket, key)

    def lab_settings(self, lab: Path, fmt: Stored) -> dict[str, str]:
        variables = self.variables(fmt)
        settings = {variables[0]: f"sentinel2-l1c-{fmt.name.replace('_', '-')}"}
        if fmt.is_archive:
            settings[variables[1]] = fmt.file_name
        return settings


class ArchiveStorage(Storage):
    """The archive read where it is (CDSE's ``eodata`` bucket): the format intake fetches
    from it, in its bucket ``DSLAB_S2L1C_{STORAGE}_{FORMAT}_BUCKET`` through the CDSE account
    within its connection quota, and the virtual formats whose chunks are in those files, with
    their manifests in a folder ``DSLAB_S2L1C_{STORAGE}_{FORMAT}_PATH`` (the lab: one on the
    network drive), made by indexing the files in the archive (``ingest``): their versions are
    the archive's, not those of the network drive's copies."""

    #: what indexes the archive in place
    indexed_by: str = "python -m sentinel2_l1c.ingest --format safe_virtual"

    #: the archive's bucket (CDSE's, and the lab's stand-in)
    bucket: str = "eodata"

    def holds(self, fmt: Stored) -> bool:
        return fmt.made_from is None or fmt.references is not None

    def step_for(self, fmt: Stored) -> str:
        return self.indexed_by if fmt.references is not None else super().step_for(fmt)

    def _refuse(self, fmt: Stored) -> None:
        if not self.holds(fmt):
            raise ConfigError(
                f"{fmt.name} is not on {self.name}: it holds the archive's own files and the "
                "virtual formats made of them"
            )

    def variables(self, fmt: Stored) -> tuple[str, ...]:
        kind = "PATH" if fmt.references is not None else "BUCKET"
        return (f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_{kind}",)

    def place(self, locations: Locations, fmt: Stored) -> Place:
        self._refuse(fmt)
        variable = self.variables(fmt)[0]
        if fmt.references is not None:
            return FolderPlace(locations.path(variable))
        quota = locations.cdse_connections
        return BucketPlace(
            locations.cdse_account, locations.text(variable, self.bucket), quota=quota
        )

    def lab_settings(self, lab: Path, fmt: Stored) -> dict[str, str]:
        if not self.holds(fmt):
            return {}
        if fmt.references is not None:  # the manifests on the lab's network drive
            return {
                self.variables(fmt)[0]: str(lab / NETWORK.name / f"{fmt.file_name}_{self.name}")
            }
        return {self.variables(fmt)[0]: self.bucket}


@dataclass(frozen=True)
class ServiceStorage(Storage):
    """A coverage service close to the data that cuts patches on request: its endpoint per
    format, ``DSLAB_S2L1C_{STORAGE}_{FORMAT}_URL``, for the formats it ``serves`` (the lab
    starts one and sets the variable itself)."""

    serves: tuple[str, ...] = ()

    def holds(self, fmt: Stored) -> bool:
        return fmt.name in self.serves

    def variables(self, fmt: Stored) -> tuple[str, ...]:
        return (f"DSLAB_S2L1C_{self.name.upper()}_{fmt.name.upper()}_URL",)

    def place(self, locations: Locations, fmt: Stored) -> ServicePlace:
        if not self.holds(fmt):
            raise ConfigError(
                f"{fmt.name} is not on {self.name}: it serves {', '.join(self.serves)}"
            )
        return ServicePlace(locations.text(self.variables(fmt)[0]).rstrip("/"), locations.retry)

    def lab_settings(self, lab: Path, fmt: Stored) -> dict[str, str]:
        return {}  # the lab's service listens on a free port: ``LocalCdse.settings``


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


SERVICE = ServiceStorage(
    "service",
    "service",
    "#8866cc",
    "an OGC API - EDR coverage service over the network drive's copy, cutting patches on the "
    "server (python -m sentinel2_l1c.coverage_service)",
    made_by="python -m sentinel2_l1c.coverage_service --store NETWORK_COPY",
    staging_source=False,
    cuts_patches=True,
    serves=("zarr_sharded",),
)


#: Where ``stage --stream-unzip`` extracts archives from.
STREAM_SOURCE = S3

#: Every storage, in the order of results and charts.
STORAGES: dict[str, Storage] = {
    storage.name: storage for storage in (NETWORK, TEMP, S3, CDSE, SERVICE)
}


def get(name: str) -> Storage:
    """The storage called ``name``; ConfigError naming the choices otherwise."""
    try:
        return STORAGES[name]
    except KeyError:
        raise ConfigError(f"unknown storage {name!r}; choose from {', '.join(STORAGES)}") from None


def label(name: str) -> str:
    """The storage's label, or its name if it is not (or no longer) registered."""
    return STORAGES[name].label if name in STORAGES else name


def staging_sources() -> list[Storage]:
    """The storages ``stage`` copies from: every one but the staging target and the archive."""
    return [s for s in STORAGES.values() if s.staging_source and not s.staging_target]


def staging_target() -> FolderStorage:
    """The storage jobs stage to (a node's own disk: a folder storage)."""
    target = next(storage for storage in STORAGES.values() if storage.staging_target)
    assert isinstance(target, FolderStorage), f"{target.name} must be a folder storage"
    return target


def place_at(text: str, locations: Locations) -> Place:
    """A place named on the command line: ``s3://BUCKET`` (the ``s3`` storage's account) or
    a folder."""
    if not text.startswith("s3://"):
        return FolderPlace(Path(text))
    bucket = text.removeprefix("s3://").strip("/")
    if "/" in bucket or not locations.valid_bucket(bucket):
        raise ConfigError(f"{text}: name a whole bucket, s3://BUCKET (S3's naming rules)")
    return BucketPlace(locations.s3_account, bucket)
