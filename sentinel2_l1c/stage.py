"""Stage formats to the temp storage (a compute node's NVMe), every action timed.

Actions, run in this order:

- ``--from-network FORMAT…``: copy from the network drive (files in parallel; a file already
  in temp with the same size and modification time is kept, as rsync does);
- ``--from-s3 FORMAT…``: download from the S3 buckets (objects in parallel, an archive as
  parallel range requests; an existing file of the object's size is kept);
- ``--unzip``: extract each archive format in temp (the zipped Zarr) into the format it
  unpacks to (the Zarr folder) in temp;
- ``--stream-unzip``: extract each archive format on S3 straight into temp through
  ``async_zipfs`` (large range requests, no zip on local disk).

A folder is built under ``.{name}.partial`` beside its target (an existing target is moved
there first, so a rerun resumes and only fetches what is missing or different), files not in
the source are removed, every file's size is verified, then it is renamed into place: a
target folder that exists is complete. Zip entries whose names would escape the target are
refused. ``--overwrite`` removes each target first, so every action is timed from scratch.
Each action's wall time, bytes and file count go into
``$DSLAB_LOG_FOLDER/stage_YYYY-MM-DD_HH-MM-SS.json``.

    python -m sentinel2_l1c.stage --from-network safe cog zarr zipzarr --from-s3 zipzarr \\
        --unzip --stream-unzip --overwrite
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel2_l1c import formats
from sentinel2_l1c.errors import ConfigError, InputDataError, RemoteError
from sentinel2_l1c.formats import Format
from sentinel2_l1c.records.actions import Action, ActionLog
from sentinel2_l1c.run.cli import DEFAULT_CONNECTIONS, add_transfer_arguments, new_parser, run_cli
from sentinel2_l1c.run.parallel import run_parallel
from sentinel2_l1c.run.progress import progress_bar
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import is_safe_relative, remove_tree
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.places import FolderPlace, Place
from sentinel2_l1c.storage.storages import Storage
from sentinel2_l1c.storage.transfer import PART_SIZE, Tally
from sentinel2_l1c.zipfs.filesystem import AsyncZipFileSystem
from sentinel2_l1c.zipfs.index import ZipFormatError

log = logging.getLogger(__name__)

Fill = Callable[[list[str], Path, Callable[[int, int], None]], None]
#: Where ``--stream-unzip`` reads archives from.
# --------------------------------------------------------------------------------------
# Building a folder atomically, resumably
# --------------------------------------------------------------------------------------


def partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def build_tree(
    target: Path,
    wanted: dict[str, int],
    current: Callable[[str, Path], bool],
    fill: Fill,
    label: str,
    show_progress: bool,
) -> Tally:
    """Make ``target`` a folder holding exactly the files ``wanted`` (relative name → size).

    Files for which ``current(name, local_copy)`` holds are kept; ``fill(names, root, done)``
    writes the others under ``root``. Unsafe names are refused before anything is written.
    """
    unsafe = [name for name in wanted if not is_safe_relative(name)]
    if unsafe:
        raise InputDataError(f"{unsafe[0]!r} would be written outside {target}; refusing to stage")
    partial = partial_path(target)
    if target.exists():
        remove_tree(partial)
        os.replace(target, partial)
    partial.mkdir(parents=True, exist_ok=True)
    present = FolderPlace(partial).stats()
    tally = Tally()
    missing = []
    for name, size in wanted.items():
        stat = present.get(name)
        if stat is not None and stat.st_size == size and current(name, partial / name):
            tally.skipped_files += 1
            tally.skipped_bytes += size
        else:
            missing.append(name)
            if stat is not None:
                (partial / name).unlink()  # outdated: its fetch must not take it for done
    for path in [p for p in partial.rglob("*") if p.is_file() or p.is_symlink()]:
        if path.relative_to(partial).as_posix() not in wanted:
            path.unlink()  # stale files and leftovers of interrupted runs
    lock = threading.Lock()
    total = sum(wanted[name] for name in missing)
    with progress_bar(len(missing), label, show_progress, ("MB",)) as bar:

        def done(files: int, size: int) -> None:
            with lock:
                tally.add(files, size)
                bar.update(tally.files, MB=f"{tally.bytes / 1e6:.0f}/{total / 1e6:.0f} MB")

        if missing:
            fill(missing, partial, done)
    for name, size in wanted.items():
        path = partial / name
        if not path.is_file() or path.stat().st_size != size:
            raise RemoteError(f"{target}: {name} is incomplete after staging; rerun to resume")
    os.replace(partial, target)
    return tally


# --------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageOptions:
    #: (source storage, format) pairs to copy to temp
    copies: tuple[tuple[str, str], ...] = ()
    unzip: bool = False
    stream_unzip: bool = False
    overwrite: bool = False
    connections: int = DEFAULT_CONNECTIONS

    def __post_init__(self) -> None:
        if not (self.copies or self.unzip or self.stream_unzip):
            raise ConfigError(
                "nothing to stage: give "
                + ", ".join(f"--from-{s.name}" for s in storages.staging_sources())
                + ", --unzip or --stream-unzip"
            )
        for storage, fmt in self.copies:
            names = [source.name for source in storages.staging_sources()]
            if storage not in names:
                raise ConfigError(f"cannot stage from {storage!r}; choose from {', '.join(names)}")
            formats.get(fmt)
        if self.connections < 1:
            raise ConfigError(f"--connections must be at least 1, got {self.connections}")

    def to_json(self) -> dict[str, Any]:
        copied = {
            f"from_{source.name}": [fmt for name, fmt in self.copies if name == source.name]
            for source in storages.staging_sources()
        }
        return {
            **copied,
            "unzip": self.unzip,
            "stream_unzip": self.stream_unzip,
            "overwrite": self.overwrite,
            "connections": self.connections,
        }


class Stager:
    """Runs staging actions into the temp storage with one pool of ``connections`` workers."""

    def __init__(
        self,
        options: StageOptions,
        locations: Locations,
        pool: ThreadPoolExecutor,
        show_progress: bool,
    ) -> None:
        self.options = options
        self.locations = locations
        self.pool = pool
        self.show_progress = show_progress
        self.temp = storages.staging_target()

    def _prepare(self, target: Path) -> None:
        if self.options.overwrite:
            remove_tree(target)
            remove_tree(partial_path(target))

    def _source(self, storage: Storage, fmt: Format) -> Place:
        place = storage.place(self.locations, fmt)
        if not place.exists():
            raise InputDataError(
                f"{place} ({storage.name} {fmt.name}) does not exist: run "
                f"{storage.step_for(fmt)} first"
            )
        return place

    def copy(self, storage: Storage, fmt: Format) -> tuple[str, str, Tally]:
        """Copy ``fmt`` from ``storage`` to temp: a tree file by file, an archive whole."""
        source = self._source(storage, fmt)
        target = self.temp.path(self.locations, fmt)
        self._prepare(target)
        label = f"{storage.name} → {self.temp.name} {fmt.name}"
        if fmt.is_archive:
            return str(source), str(target), self._copy_archive(source, target, label)
        objects = source.files()

        def fill(names: list[str], root: Path, done: Callable[[int, int], None]) -> None:
            def fetch(name: str) -> None:
                source.fetch(name, objects[name], root / name)
                done(1, objects[name])

            run_parallel(self.pool, fetch, names)

        tally = build_tree(target, objects, source.is_current, fill, label, self.show_progress)
        return str(source), str(target), tally

    def _copy_archive(self, source: Place, target: Path, label: str) -> Tally:
        size, tally = source.size(), Tally()
        if target.is_file() and target.stat().st_size == size:
            if source.is_current("", target):
                tally.skipped_files, tally.skipped_bytes = 1, size
                return tally
            target.unlink()  # outdated: its fetch must not take it for done
        with progress_bar(-(-size // PART_SIZE), label, self.show_progress) as bar:
            lock, parts = threading.Lock(), [0]

            def part_done(_: int) -> None:
                with lock:
                    parts[0] += 1
                    bar.update(min(parts[0], bar.max_value))

            source.fetch_archive(target, self.pool, part_done)
        tally.add(1, size)
        return tally

    def unzip(self, storage: Storage, fmt: Format, action: str) -> tuple[str, str, Tally]:
        """Extract every entry of the archive ``fmt`` on ``storage`` into temp."""
        assert fmt.unpacks_to is not None
        source = self._source(storage, fmt)
        target = self.temp.path(self.locations, formats.get(fmt.unpacks_to))
        self._prepare(target)
        fs, path = source.filesystem(asynchronous=False)
        zip_fs = AsyncZipFileSystem(path, fs=fs, skip_instance_cache=True)
        try:
            entries = zip_fs.find("", detail=True)
        except ZipFormatError as err:
            raise InputDataError(str(err)) from None
        wanted = {name.lstrip("/"): info["size"] for name, info in entries.items()}

        def fill(names: list[str], root: Path, done: Callable[[int, int], None]) -> None:
            try:
                zip_fs.extract(names, str(root), done, concurrency=self.options.connections)
            except ZipFormatError as err:
                raise InputDataError(str(err)) from None

        label = f"{action} → {self.temp.name} {fmt.unpacks_to}"
        tally = build_tree(target, wanted, lambda name, stat: True, fill, label, self.show_progress)
        return str(source), str(target), tally


def stage(
    options: StageOptions, locations: Locations, output: Path, show_progress: bool = True
) -> Path:
    """Run every chosen action in order; returns the results file."""
    journal = ActionLog.start(output, "stage", options.to_json(), locations.network)
    temp = storages.staging_target()
    actions = [("copy", storages.get(name), formats.get(fmt)) for name, fmt in options.copies]
    if options.unzip:
        actions += [("unzip", temp, fmt) for fmt in formats.archive_formats()]
    if options.stream_unzip:
        actions += [
            ("stream-unzip", storages.STREAM_SOURCE, fmt) for fmt in formats.archive_formats()
        ]
    with ThreadPoolExecutor(options.connections) as pool:
        stager = Stager(options, locations, pool, show_progress)
        for action, source_storage, fmt in actions:
            started = time.perf_counter()
            if action == "copy":
                source, target, tally = stager.copy(source_storage, fmt)
            else:
                source, target, tally = stager.unzip(source_storage, fmt, action)
            seconds = time.perf_counter() - started
            journal.add(
                Action(
                    action,
                    source_storage.name,
                    fmt.name,
                    source,
                    target,
                    seconds,
                    tally.files,
                    tally.bytes,
                    tally.skipped_files,
                    tally.skipped_bytes,
                )  # fmt: skip
            )
            log.info(
                "%s %s %s: %d files (%.1f MB) in %.1f s, %d already there",
                action, source_storage.name, fmt.name, tally.files, tally.bytes / 1e6, seconds,
                tally.skipped_files,
            )  # fmt: skip
    return journal.path


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.stage")
    for source in storages.staging_sources():
        parser.add_argument(
            f"--from-{source.name}", dest=f"from_{source.name}", nargs="+", default=[],
            choices=formats.FORMATS, metavar="FORMAT",
            help=f"Copy these formats from {source.description} to temp "
            f"(of {', '.join(formats.FORMATS)}).",
        )  # fmt: skip
    archives = ", ".join(fmt.name for fmt in formats.archive_formats())
    parser.add_argument(
        "--unzip", action="store_true",
        help=f"Extract the archives in temp ({archives}) into the formats they hold.",
    )  # fmt: skip
    parser.add_argument(
        "--stream-unzip", action="store_true",
        help=f"Extract the archives ({archives}) on {storages.STREAM_SOURCE.name} straight into temp "
        "(no local zip).",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="Remove each target first (time from scratch)."
    )
    add_transfer_arguments(parser, "Concurrent copies, requests or extractions.")
    return parser


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    copies = [
        (source.name, fmt)
        for source in storages.staging_sources()
        for fmt in dict.fromkeys(getattr(args, f"from_{source.name}"))
    ]
    options = StageOptions(
        tuple(copies), args.unzip, args.stream_unzip, args.overwrite, args.connections
    )
    output = locations.results_folder(args.output)
    print(f"results: {stage(options, locations, output, not args.quiet)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
