"""Stage formats to the temp storage (a compute node's NVMe), every action timed.

Actions, run in this order:

- ``--from-network FORMAT…``: copy from the network drive (files in parallel; a file already
  in temp with the same size and modification time is kept, as rsync does);
- ``--from-s3 FORMAT…``: download from the S3 buckets (objects in parallel, the zipped Zarr as
  parallel range requests; an existing file of the object's size is kept);
- ``--unzip``: extract the zipped Zarr in temp into the Zarr folder in temp;
- ``--stream-unzip``: extract the zipped Zarr on S3 straight into the Zarr folder in temp
  through ``async_zipfs`` (large range requests, no zip on local disk).

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
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fsspec.asyn import sync

from .async_zipfs import AsyncZipFileSystem, ZipFormatError
from .errors import ConfigError, InputDataError, RemoteError
from .remote import (
    PART_SIZE,
    RetryPolicy,
    download_large,
    download_object,
    list_objects,
    s3_client,
)
from .stores import s3_filesystem
from .utils import (
    DEFAULT_CONNECTIONS,
    FORMATS,
    ActionLog,
    Tally,
    add_transfer_arguments,
    hidden,
    is_safe_relative,
    log_folder,
    new_parser,
    producing_step,
    progress_bar,
    remove_tree,
    run_cli,
    run_parallel,
    s3_bucket,
    s3_profile,
    s3_zipzarr_key,
    storage_path,
    temp_sibling,
)

log = logging.getLogger(__name__)

Fill = Callable[[list[str], Path, Callable[[int, int], None]], None]


# --------------------------------------------------------------------------------------
# Building a folder atomically, resumably
# --------------------------------------------------------------------------------------


def partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def local_tree(root: Path) -> dict[str, os.stat_result]:
    """Relative name → stat of every visible file under ``root``."""
    files = {}
    for path in root.rglob("*"):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and not hidden(relative):
            files[str(relative)] = path.stat()
    return files


def build_tree(
    target: Path,
    wanted: dict[str, int],
    current: Callable[[str, os.stat_result], bool],
    fill: Fill,
    label: str,
    show_progress: bool,
) -> Tally:
    """Make ``target`` a folder holding exactly the files ``wanted`` (relative name → size).

    Files for which ``current(name, stat)`` holds are kept; ``fill(names, root, done)``
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
    present = local_tree(partial)
    tally = Tally()
    missing = []
    for name, size in wanted.items():
        stat = present.get(name)
        if stat is not None and stat.st_size == size and current(name, stat):
            tally.skipped_files += 1
            tally.skipped_bytes += size
        else:
            missing.append(name)
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


def _copy_file(source: Path, target: Path) -> None:
    """Copy with contents and modification time, under a temporary name, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(target)
    try:
        shutil.copy2(source, temp)
        os.replace(temp, target)
    except BaseException:
        remove_tree(temp)
        raise


# --------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageOptions:
    from_network: tuple[str, ...] = ()
    from_s3: tuple[str, ...] = ()
    unzip: bool = False
    stream_unzip: bool = False
    overwrite: bool = False
    connections: int = DEFAULT_CONNECTIONS
    retry: RetryPolicy = RetryPolicy()

    def __post_init__(self) -> None:
        if not (self.from_network or self.from_s3 or self.unzip or self.stream_unzip):
            raise ConfigError(
                "nothing to stage: give --from-network, --from-s3, --unzip or --stream-unzip"
            )
        for fmt in (*self.from_network, *self.from_s3):
            if fmt not in FORMATS:
                raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        if self.connections < 1:
            raise ConfigError(f"--connections must be at least 1, got {self.connections}")

    def to_json(self) -> dict[str, Any]:
        return {
            "from_network": list(self.from_network),
            "from_s3": list(self.from_s3),
            "unzip": self.unzip,
            "stream_unzip": self.stream_unzip,
            "overwrite": self.overwrite,
            "connections": self.connections,
        }


class Stager:
    """Runs staging actions with one pool of ``connections`` workers."""

    def __init__(self, options: StageOptions, pool: ThreadPoolExecutor, show_progress: bool):
        self.options = options
        self.pool = pool
        self.show_progress = show_progress
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(s3_profile(), self.options.connections * 2)
        return self._client

    def _prepare(self, target: Path) -> None:
        if self.options.overwrite:
            remove_tree(target)
            remove_tree(partial_path(target))

    def copy_from_network(self, fmt: str) -> tuple[str, str, Tally]:
        source, target = storage_path("network", fmt), storage_path("temp", fmt)
        if not source.exists():
            raise InputDataError(
                f"{source} (network {fmt}) does not exist: run {producing_step('network', fmt)} first"
            )
        self._prepare(target)
        if source.is_file():
            stat, tally = source.stat(), Tally()
            if target.is_file() and _same_file(target.stat(), stat):
                tally.skipped_files, tally.skipped_bytes = 1, stat.st_size
            else:
                _copy_file(source, target)
                tally.add(1, stat.st_size)
            return str(source), str(target), tally
        files = local_tree(source)

        def fill(names: list[str], root: Path, done: Callable[[int, int], None]) -> None:
            def copy(name: str) -> None:
                _copy_file(source / name, root / name)
                done(1, files[name].st_size)

            run_parallel(self.pool, copy, names)

        tally = build_tree(
            target,
            {name: stat.st_size for name, stat in files.items()},
            lambda name, stat: _same_file(stat, files[name]),
            fill,
            f"network → temp {fmt}",
            self.show_progress,
        )
        return str(source), str(target), tally

    def copy_from_s3(self, fmt: str) -> tuple[str, str, Tally]:
        bucket, target = s3_bucket(fmt), storage_path("temp", fmt)
        retry = self.options.retry
        self._prepare(target)
        prefix = s3_zipzarr_key() if fmt == "zipzarr" else ""
        try:
            listed = list_objects(self.client, bucket, prefix, retry)
        except self.client.exceptions.NoSuchBucket:
            listed = []
        objects = {o.key: o.size for o in listed if fmt != "zipzarr" or o.key == prefix}
        if not objects:
            raise InputDataError(
                f"s3://{bucket}/{prefix} (s3 {fmt}) is empty: run {producing_step('s3', fmt)} first"
            )
        if fmt == "zipzarr":
            size, tally = objects[prefix], Tally()
            if target.is_file() and target.stat().st_size == size:
                tally.skipped_files, tally.skipped_bytes = 1, size
                return f"s3://{bucket}/{prefix}", str(target), tally
            with progress_bar(-(-size // PART_SIZE), f"s3 → temp {fmt}", self.show_progress) as bar:
                lock, parts = threading.Lock(), [0]

                def part_done(_: int) -> None:
                    with lock:
                        parts[0] += 1
                        bar.update(parts[0])

                download_large(
                    self.client, bucket, prefix, size, target, retry, self.pool, part_done
                )
            tally.add(1, size)
            return f"s3://{bucket}/{prefix}", str(target), tally

        def fill(names: list[str], root: Path, done: Callable[[int, int], None]) -> None:
            def get(name: str) -> None:
                download_object(self.client, bucket, name, objects[name], root / name, retry)
                done(1, objects[name])

            run_parallel(self.pool, get, names)

        tally = build_tree(
            target, objects, lambda name, stat: True, fill, f"s3 → temp {fmt}", self.show_progress
        )
        return f"s3://{bucket}", str(target), tally

    def unzip(
        self, zip_fs: AsyncZipFileSystem, source: str, label: str, made_by: str
    ) -> tuple[str, str, Tally]:
        """Extract every file of the zipped Zarr ``zip_fs`` into the temp Zarr folder."""
        target = storage_path("temp", "zarr")
        self._prepare(target)
        try:
            entries = zip_fs.find("", detail=True)
        except FileNotFoundError:
            raise InputDataError(f"{source} does not exist: run {made_by} first") from None
        except ZipFormatError as err:
            raise InputDataError(str(err)) from None
        wanted = {name.lstrip("/"): info["size"] for name, info in entries.items()}

        def fill(names: list[str], root: Path, done: Callable[[int, int], None]) -> None:
            try:
                sync(
                    zip_fs.loop,
                    zip_fs._extract,
                    names,
                    str(root),
                    done,
                    concurrency=self.options.connections,
                )
            except ZipFormatError as err:
                raise InputDataError(str(err)) from None

        tally = build_tree(
            target,
            wanted,
            lambda name, stat: True,
            fill,
            f"{label} → temp zarr",
            self.show_progress,
        )
        return source, str(target), tally

    def unzip_local(self) -> tuple[str, str, Tally]:
        source = storage_path("temp", "zipzarr")
        zip_fs = AsyncZipFileSystem(str(source), target_protocol="file", skip_instance_cache=True)
        return self.unzip(zip_fs, str(source), "unzip", producing_step("temp", "zipzarr"))

    def stream_unzip(self) -> tuple[str, str, Tally]:
        bucket, key = s3_bucket("zipzarr"), s3_zipzarr_key()
        fs = s3_filesystem(s3_profile(), asynchronous=False)
        zip_fs = AsyncZipFileSystem(f"{bucket}/{key}", fs=fs, skip_instance_cache=True)
        where = f"s3://{bucket}/{key}"
        return self.unzip(zip_fs, where, "stream-unzip", producing_step("s3", "zipzarr"))


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """rsync's quick check: same size and same modification time (to the microsecond)."""
    return a.st_size == b.st_size and abs(a.st_mtime_ns - b.st_mtime_ns) < 1000


def stage(options: StageOptions, output: Path, show_progress: bool = True) -> Path:
    """Run every chosen action in order; returns the results file."""
    journal = ActionLog(output, "stage", options.to_json())
    actions: list[tuple[str, str | None, str, Callable[[Stager], tuple[str, str, Tally]]]] = [
        *[
            ("copy", "network", f, lambda s, f=f: s.copy_from_network(f))
            for f in options.from_network
        ],
        *[("copy", "s3", f, lambda s, f=f: s.copy_from_s3(f)) for f in options.from_s3],
    ]
    if options.unzip:
        actions.append(("unzip", "temp", "zipzarr", Stager.unzip_local))
    if options.stream_unzip:
        actions.append(("stream-unzip", "s3", "zipzarr", Stager.stream_unzip))
    with ThreadPoolExecutor(options.connections) as pool:
        stager = Stager(options, pool, show_progress)
        for action, source_storage, fmt, run in actions:
            started = time.perf_counter()
            source, target, tally = run(stager)
            seconds = time.perf_counter() - started
            journal.add(
                {
                    "action": action,
                    "source_storage": source_storage,
                    "format": fmt,
                    "source": source,
                    "target": target,
                    "seconds": seconds,
                    "files": tally.files,
                    "bytes": tally.bytes,
                    "skipped_files": tally.skipped_files,
                    "skipped_bytes": tally.skipped_bytes,
                }
            )
            log.info(
                "%s %s %s: %d files (%.1f MB) in %.1f s, %d already there",
                action, source_storage, fmt, tally.files, tally.bytes / 1e6, seconds,
                tally.skipped_files,
            )  # fmt: skip
    return journal.path


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.stage")
    parser.add_argument(
        "--from-network", "--from_network", dest="from_network", nargs="+", default=[],
        choices=FORMATS, metavar="FORMAT",
        help=f"Copy these formats from the network drive to temp (of {', '.join(FORMATS)}; "
        "default: none).",
    )  # fmt: skip
    parser.add_argument(
        "--from-s3", "--from_s3", dest="from_s3", nargs="+", default=[], choices=FORMATS,
        metavar="FORMAT", help="Download these formats from their S3 buckets to temp (default: none).",
    )  # fmt: skip
    parser.add_argument(
        "--unzip", action="store_true", help="Extract the temp zipped Zarr into the temp Zarr."
    )
    parser.add_argument(
        "--stream-unzip", "--stream_unzip", dest="stream_unzip", action="store_true",
        help="Extract the zipped Zarr on S3 straight into the temp Zarr (no local zip).",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="Remove each target first (time from scratch)."
    )
    add_transfer_arguments(parser, "Concurrent copies, requests or extractions.")
    return parser


def _run(args: argparse.Namespace) -> int:
    options = StageOptions(
        tuple(dict.fromkeys(args.from_network)),
        tuple(dict.fromkeys(args.from_s3)),
        args.unzip,
        args.stream_unzip,
        args.overwrite,
        args.connections,
    )
    print(f"results: {stage(options, args.output or log_folder(), not args.quiet)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
