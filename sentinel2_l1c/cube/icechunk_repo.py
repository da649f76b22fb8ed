"""Icechunk repositories on the tool's places, and the one commit a tile-year conversion makes.

A repository is a tree of objects (``chunks/``, ``manifests/``, ``snapshots/``,
``transactions/``, ``refs/``, ``config.yaml``) with the same keys in a local folder and under
an S3 bucket, so publish and stage copy it like any tree; readers open it through icechunk's
own storage (Rust ``object_store``) on either, at the last commit of branch ``main``.

A conversion prepares a tile-year's arrays in a session on ``main``; when blocks follow, the
prepared state is flushed to a snapshot on the work branch, the blocks are written through
forks of a session there (picklable, so Dask workers in other processes or Slurm jobs write
them), the forks are merged and committed, and only then does ``main`` move, in one
reference update, to that commit. A kill at any point leaves ``main`` at its previous commit;
the rerun starts the tile-year again (what a killed run wrote stays as unreferenced objects
until ``expire_snapshots``/``garbage_collect``).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import icechunk
import zarr

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.storage.clients import icechunk_config, local_icechunk
from sentinel2_l1c.storage.places import Place

log = logging.getLogger(__name__)

BRANCH = "main"
WORK_BRANCH = "dslab-work"  # where a tile-year is prepared and written before main moves


def open_repository(place: Place, create: bool = False) -> icechunk.Repository:
    """The repository at ``place`` (made if ``create``, in the current format); InputDataError
    if there is none. One written by icechunk 1 (format v1) opens as it is, read and written
    in its own format, with a warning line naming ``upgrade_repository``."""
    storage, config = place.icechunk_storage(), icechunk_config(place.retry)
    if create and place.local_path() is None and not icechunk.Repository.exists(storage):
        _seed(place)
    if create:
        repository = icechunk.Repository.open_or_create(storage, config)
    elif not icechunk.Repository.exists(storage):
        raise InputDataError(f"{place}: no icechunk repository")
    else:
        repository = icechunk.Repository.open(storage, config)
    if repository.spec_version != icechunk.SpecVersion.current():
        log.warning(
            "%s: an icechunk repository of format %s (icechunk 1), read and written as it is; "
            "convert_safe_to_zarr --upgrade-icechunk migrates it to %s",
            place,
            format_name(repository.spec_version),
            format_name(icechunk.SpecVersion.current()),
        )
    return repository


def _seed(place: Place) -> None:
    """A new repository at a bucket's root: icechunk (≥ 2.1) creates none there, but opens
    and updates one, so a new repository is made in a local folder and its objects copied,
    as publish copies any repository."""
    with tempfile.TemporaryDirectory() as folder:
        icechunk.Repository.create(local_icechunk(Path(folder)))
        for path in sorted(Path(folder).rglob("*"), key=lambda p: "refs" in p.parts):
            if path.is_file():  # the branch reference last: it makes the repository
                place.write(path.relative_to(folder).as_posix(), path.read_bytes())


def format_name(version: icechunk.SpecVersion) -> str:
    return f"v{int(version)}"


def upgrade_repository(place: Place) -> str:
    """Migrate the repository at ``place`` to the current format in place, with icechunk's own
    migration (no other reader or writer may use it meanwhile); returns what was done."""
    repository = open_repository(place)
    before = repository.spec_version
    if before == icechunk.SpecVersion.current():
        return f"{place}: already icechunk format {format_name(before)}"
    try:
        upgraded = icechunk.upgrade_icechunk_repository(repository, dry_run=False)
    except icechunk.IcechunkError as err:
        raise InputDataError(f"{place}: the upgrade to icechunk format v2 failed: {err}") from err
    return f"{place}: upgraded from icechunk format {format_name(before)} to {format_name(upgraded.spec_version)}"


def read_store(place: Place) -> icechunk.IcechunkStore:
    """The last commit of ``main`` as a read-only Zarr store."""
    return open_repository(place).readonly_session(BRANCH).store


@dataclass(frozen=True)
class Commit:
    snapshot: str
    written_at: datetime
    message: str
    products_added: int

    def line(self) -> str:
        return f"{self.snapshot}  {self.written_at:%Y-%m-%d %H:%M:%S}  {self.message}"


def history(place: Place) -> list[Commit]:
    """The commits of ``main``, newest first."""
    return [
        Commit(s.id, s.written_at, s.message, len(s.metadata.get("products_added", [])))
        for s in open_repository(place).ancestry(branch=BRANCH)
    ]


class TileYearCommit:
    """The ``protocol.TileYearWriter`` of a repository: one tile-year's conversion or append as one commit of ``main`` (see the module text).

    Use: ``root`` to prepare groups, ``forks(n)`` for the block tasks, ``merge`` what they
    return, ``root`` again to record progress, then ``commit``.
    """

    def __init__(self, repository: icechunk.Repository) -> None:
        self.repository = repository
        self.base = repository.lookup_branch(BRANCH)
        self.session = repository.writable_session(BRANCH)
        self.on_work_branch = False
        if WORK_BRANCH in repository.list_branches():  # left by a killed run
            repository.delete_branch(WORK_BRANCH)

    @property
    def root(self) -> zarr.Group:
        return zarr.open_group(self.session.store, mode="a", zarr_format=3)

    def forks(self, count: int, prepared: str) -> list[Any]:
        """``count`` sessions the block tasks write through (none: nothing to write); the
        prepared arrays are flushed first (``prepared`` describes them). Called again for
        each round of blocks before the one commit."""
        if count == 0:
            return []
        snapshot = self.session.flush(f"{prepared} (arrays prepared; blocks follow)")
        if self.on_work_branch:
            self.repository.reset_branch(WORK_BRANCH, snapshot)
        else:
            self.repository.create_branch(WORK_BRANCH, snapshot)
        self.session = self.repository.writable_session(WORK_BRANCH)
        self.on_work_branch = True
        return [self.session.fork() for _ in range(count)]

    def merge(self, forks: list[Any]) -> None:
        self.session.merge(*forks)

    def commit(self, message: str, products_added: list[str]) -> str | None:
        """Commit and move ``main`` there; None when nothing changed."""
        if not self.on_work_branch and not self.session.has_uncommitted_changes:
            return None
        if not self.on_work_branch:
            return self.session.commit(message, {"products_added": products_added})
        snapshot = self.session.commit(message, {"products_added": products_added})
        # fails if another writer moved main meanwhile, leaving main as that writer left it
        self.repository.reset_branch(BRANCH, snapshot, from_snapshot_id=self.base)
        self.repository.delete_branch(WORK_BRANCH)
        return snapshot
