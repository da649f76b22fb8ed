"""Shared definitions: band groups and chunk sizes, tile ids, atomic outputs, results files,
parallelism and progress bars.

Configuration lives in ``locations``, the command-line style in ``cli``, the storages and
formats in their registries (``storages``, ``formats``).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import progressbar

from .errors import ConfigError, InputDataError

log = logging.getLogger(__name__)
T = TypeVar("T")

# --------------------------------------------------------------------------------------
# Bands and band groups
# --------------------------------------------------------------------------------------

#: All 13 bands in ESA's order; ``bandId`` in the product metadata is the index here.
BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip

RESOLUTIONS: tuple[int, ...] = (10, 20, 60)


@dataclass(frozen=True)
class BandGroup:
    """Bands stored together: one Zarr array, one COG, one entry in the benchmark results."""

    bands: tuple[str, ...]
    resolution: int

    @property
    def name(self) -> str:
        return "_".join(self.bands)

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"{self.name}: unknown resolution {self.resolution}")


#: How they are chunked is a named layout's business (``zarr_layouts``).
BAND_GROUPS: tuple[BandGroup, ...] = (
    BandGroup(("B02", "B03", "B04", "B08"), 10),
    BandGroup(("B05", "B06", "B07", "B8A", "B11", "B12"), 20),
    BandGroup(("B01", "B09", "B10"), 60),
)
BAND_GROUP_NAMES: tuple[str, ...] = tuple(group.name for group in BAND_GROUPS)


def band_group(name: str) -> BandGroup:
    """The band group called ``name`` (e.g. ``B02_B03_B04_B08``)."""
    for group in BAND_GROUPS:
        if group.name == name:
            return group
    raise ConfigError(f"unknown band group {name!r}; choose from {', '.join(BAND_GROUP_NAMES)}")


def band_resolution(band: str) -> int:
    """Native resolution in metres of ``band``."""
    for group in BAND_GROUPS:
        if band in group.bands:
            return group.resolution
    raise ConfigError(f"unknown band {band!r}; choose from {', '.join(BANDS)}")


# --------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------

# MGRS: 2-digit UTM zone, latitude band (C..X without I, O), 100 km square (no I, O).
_TILE_RE = re.compile(r"^(0[1-9]|[1-5][0-9]|60)[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V]$")


def parse_tile_id(text: str) -> str:
    """Validate an MGRS tile id such as ``35VLH`` (a leading ``T`` is accepted and dropped)."""
    tile = text.strip().upper().removeprefix("T")
    if not _TILE_RE.match(tile):
        raise ConfigError(
            f"invalid tile id {text!r}: expected an MGRS tile such as 35VLH "
            "(UTM zone 01-60, latitude band C-X, 100 km square letters)"
        )
    return tile


# --------------------------------------------------------------------------------------
# Atomic outputs
# --------------------------------------------------------------------------------------


def temp_sibling(target: Path) -> Path:
    """A unique temporary name beside ``target``; never matches the patterns of finished outputs."""
    return target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` only on success.

    Works for a file or a folder written at the yielded path. On error the temporary output
    is removed and ``target`` is left as it was, so nothing half-written is taken as done.
    Temporary outputs of ``target`` that a killed run left are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        remove_tree(stale)
    temp = temp_sibling(target)
    try:
        yield temp
        if temp.is_file():
            _fsync_file(temp)
        os.replace(temp, target)
    except BaseException:
        remove_tree(temp)
        raise


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file, fsync, rename)."""
    with atomic_output(target) as temp:
        temp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def remove_tree(path: Path) -> None:
    """Remove a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def tree_size(path: Path) -> tuple[int, int]:
    """Number of files and bytes of a folder (or of one file)."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return len(files), sum(p.stat().st_size for p in files)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def is_safe_relative(name: str) -> bool:
    """True if the relative path ``name`` (``/``-separated) stays inside the folder it is
    joined to and can be a file name there: not empty, not absolute, no ``..`` parts, no NUL."""
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and "\0" not in name


def hidden(relative: PurePosixPath | Path) -> bool:
    """True for paths with a part starting with ``.``: this tool's temporary outputs."""
    return any(part.startswith(".") for part in relative.parts)


@dataclass
class Tally:
    """What a copy did: files and bytes written, and those found already in place."""

    files: int = 0
    bytes: int = 0
    skipped_files: int = 0
    skipped_bytes: int = 0

    def add(self, files: int, size: int) -> None:
        self.files += files
        self.bytes += size


def read_json(path: Path) -> dict:
    """A results file; a missing or malformed one is an InputDataError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise InputDataError(f"{path}: not JSON ({err})") from None


def new_result_file(folder: Path, prefix: str, started: datetime, text: str) -> Path:
    """``{folder}/{prefix}_YYYY-MM-DD_HH-MM-SS.json`` holding ``text``, created whole and
    exclusively: a second run started in the same second gets ``…_2.json``, never the first
    run's file. (Written under a temporary name, then hard-linked to the first free name.)"""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}_{started:%Y-%m-%d_%H-%M-%S}"
    temp = temp_sibling(folder / f"{stem}.json")
    try:
        temp.write_text(text)
        _fsync_file(temp)
        for number in itertools.count(1):
            target = folder / (f"{stem}.json" if number == 1 else f"{stem}_{number}.json")
            try:
                os.link(temp, target)
                return target
            except FileExistsError:
                continue
    finally:
        temp.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def run_environment(network: dict[str, str] | None = None) -> dict[str, Any]:
    """Where a measurement was taken: host, CPUs, platform, Python and library versions, and
    the lab's network profiles (``Locations.network``; None: a real network)."""
    import rasterio

    versions = {}
    for package in ("numpy", "zarr", "rasterio", "xarray", "s3fs", "boto3"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    versions["gdal"] = rasterio.__gdal_version__
    return {
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "network": network,
    }


# --------------------------------------------------------------------------------------
# Parallelism
# --------------------------------------------------------------------------------------


def run_parallel(pool: Executor, function: Callable[[T], Any], items: Iterable[T]) -> None:
    """Run ``function`` on every item in ``pool``; on the first failure cancel what has not
    started, so an interrupted copy stops promptly instead of finishing the queue."""
    futures = [pool.submit(function, item) for item in items]
    try:
        for future in futures:
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def compute_in_batches(
    function: Callable[[T], Any],
    items: list[T],
    *,
    parallel: int,
    label: str,
    show_progress: bool,
    after_batch: Callable[[list[T], list[Any]], None] | None = None,
) -> list[Any]:
    """``function`` over ``items`` as Dask tasks, a few per ``parallel`` task slot at a time
    (on the engine of the caller's ``DaskEngine.running``).

    Batches bound memory and let ``after_batch(items, results)`` record progress, so an
    interrupted run keeps what finished. Returns the results in order.
    """
    import dask

    size = 4 * parallel
    results: list[Any] = []
    with progress_bar(len(items), label, show_progress) as bar:
        bar.update(0)
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            outcome = list(dask.compute(*[dask.delayed(function)(item) for item in batch]))
            if after_batch is not None:
                after_batch(batch, outcome)
            results += outcome
            bar.update(start + len(batch))
    return results


# --------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------


def progress_bar(
    total: int, label: str, enabled: bool = True, variables: tuple[str, ...] = ()
) -> progressbar.ProgressBar:
    """A progress bar on stderr showing ``variables`` too; a silent one if not ``enabled``.

    Set a variable with ``bar.update(count, name=value)``.
    """
    if not enabled:
        return progressbar.NullBar(max_value=total)
    widgets: list = [f"{label} ", progressbar.Counter(), f"/{total} "]
    for name in variables:
        widgets += [progressbar.Variable(name, format="{formatted_value}", width=1), " "]
    widgets += [progressbar.Bar(), " ", progressbar.ETA()]
    return progressbar.ProgressBar(max_value=total, widgets=widgets, fd=sys.stderr)
