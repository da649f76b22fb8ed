"""Shared definitions: band groups and chunk sizes, configuration, atomic writes, CLI plumbing.

Configuration is read from environment variables *when asked for*, never at import time. A
``.env`` file in the working directory is loaded first (python-dotenv), without overriding
variables that are already set. Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
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
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar, get_args

import dotenv
import progressbar

from .errors import ConfigError, DslabError, InputDataError

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
    #: Zarr chunk shape (time, band, y, x).
    chunks: tuple[int, int, int, int]
    #: Side in pixels of a sharded Zarr shard, also the block a conversion task writes: a
    #: multiple of the chunk side and of ESA's JP2 tile side (1024/640/192), so every JP2
    #: tile is decoded once and every chunk or shard is written once. Shards span one time
    #: chunk, so appending dates rewrites at most the last partial shard.
    block: int

    @property
    def name(self) -> str:
        return "_".join(self.bands)

    def __post_init__(self) -> None:
        if self.chunks[1] != len(self.bands):
            raise ValueError(f"{self.name}: band chunk must hold all {len(self.bands)} bands")
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"{self.name}: unknown resolution {self.resolution}")
        if self.block % self.chunks[2] or self.block % self.chunks[3]:
            raise ValueError(f"{self.name}: block {self.block} must be a multiple of the chunks")


#: Chunk sizes grow in time as resolution falls, so chunks stay a few MB at every resolution.
#: A full-size tile-year of 192 dates has 4840 + 2420 + 675 plain chunks, and
#: 10·6² + 5·5² + 3·3² = 512 shards.
BAND_GROUPS: tuple[BandGroup, ...] = (
    BandGroup(("B02", "B03", "B04", "B08"), 10, (20, 4, 512, 512), block=2048),
    BandGroup(("B05", "B06", "B07", "B8A", "B11", "B12"), 20, (40, 6, 256, 256), block=1280),
    BandGroup(("B01", "B09", "B10"), 60, (80, 3, 128, 128), block=768),
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
# Storages, formats and tiles
# --------------------------------------------------------------------------------------

Storage = Literal["network", "temp", "s3"]
Format = Literal["safe", "cog", "zarr", "zipzarr", "zarr_sharded"]
STORAGES: tuple[str, ...] = get_args(Storage)
FORMATS: tuple[str, ...] = get_args(Format)

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
# Configuration from the environment
# --------------------------------------------------------------------------------------

ENV_EXAMPLE = ".env.example"
DEFAULT_STAC_URL = "https://stac.dataspace.copernicus.eu/v1"
_VAR_REF_RE = re.compile(r"\$\{([^}:]+)(?::-[^}]*)?\}")
# .env files already loaded (by absolute path) and, per variable taken from a .env file,
# the names of unset variables its value referred to (python-dotenv expands those to "").
_loaded_env_files: set[Path] = set()
_unresolved_refs: dict[str, list[str]] = {}


def load_env_file(path: Path | None = None) -> None:
    """Load ``.env`` from the working directory (or ``path``) once, never overriding."""
    path = (path or Path.cwd() / ".env").resolve()
    if path in _loaded_env_files or not path.is_file():
        return
    _loaded_env_files.add(path)
    raw = dotenv.dotenv_values(path, interpolate=False)
    defined_in_file: set[str] = set()
    for name, value in raw.items():
        if name not in os.environ and value is not None:
            missing = [
                ref for ref in _VAR_REF_RE.findall(value)
                if ref not in os.environ and ref not in defined_in_file
            ]  # fmt: skip
            if missing:
                _unresolved_refs[name] = missing
        defined_in_file.add(name)
    dotenv.load_dotenv(path, override=False)


def env_value(name: str, default: str | None = None) -> str:
    """The value of environment variable ``name`` (after loading ``.env``).

    Raises ConfigError when it is unset and has no default, is empty, or was built in
    ``.env`` from a variable that is not set.
    """
    load_env_file()
    value = os.environ.get(name)
    if value is None:
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set: set it or add it to .env (see {ENV_EXAMPLE})"
        )
    if name in _unresolved_refs:
        refs = ", ".join(f"${{{ref}}}" for ref in _unresolved_refs[name])
        raise ConfigError(
            f"environment variable {name} in .env refers to {refs}, which is not set "
            f"(see {ENV_EXAMPLE})"
        )
    if not value.strip():
        raise ConfigError(f"environment variable {name} is empty (see {ENV_EXAMPLE})")
    return value.strip()


def env_int(name: str, default: int | None = None, minimum: int | None = None) -> int:
    """An integer environment variable; malformed or too small values raise ConfigError."""
    text = env_value(name, None if default is None else str(default))
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(
            f"environment variable {name} must be an integer, got {text!r} (see {ENV_EXAMPLE})"
        ) from None
    if minimum is not None and number < minimum:
        raise ConfigError(
            f"environment variable {name} must be at least {minimum}, got {number} "
            f"(see {ENV_EXAMPLE})"
        )
    return number


def env_path(name: str) -> Path:
    """A path environment variable, with ``~`` expanded."""
    return Path(env_value(name)).expanduser()


# Lower-case letters, digits, dots, hyphens and (Ceph/Allas legacy) underscores, 3-63 chars.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


def env_bucket(name: str) -> str:
    """An S3 bucket name environment variable, checked against S3 naming rules."""
    bucket = env_value(name)
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(
            f"environment variable {name} is not a valid S3 bucket name: {bucket!r} "
            f"(3-63 lower-case letters, digits, '.', '-', '_'; see {ENV_EXAMPLE})"
        )
    return bucket


def location_variable(storage: str, fmt: str) -> str:
    """Name of the variable holding where ``fmt`` lives on ``storage``."""
    if storage not in STORAGES:
        raise ConfigError(f"unknown storage {storage!r}; choose from {', '.join(STORAGES)}")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if storage == "s3":
        return f"DSLAB_S2L1C_S3_{fmt.upper()}_BUCKET"
    return f"DSLAB_S2L1C_{storage.upper()}_{fmt.upper()}_PATH"


def storage_path(storage: str, fmt: str) -> Path:
    """Folder (or zip file, for ``zipzarr``) of ``fmt`` on the ``network`` or ``temp`` storage."""
    if storage == "s3":
        raise ConfigError("the s3 storage has buckets, not paths: use s3_bucket()")
    return env_path(location_variable(storage, fmt))


def s3_bucket(fmt: str) -> str:
    """Bucket holding ``fmt`` on the ``s3`` storage."""
    return env_bucket(location_variable("s3", fmt))


def s3_zipzarr_key() -> str:
    """Object key of the zipped Zarr in its bucket."""
    return env_value("DSLAB_S2L1C_S3_ZIPZARR_KEY", "sentinel2_l1c_zipzarr.zip")


def s3_profile() -> str:
    """boto3 profile of the ``s3`` storage (endpoint in the AWS config file)."""
    return env_value("DSLAB_S2L1C_S3_PROFILE")


def log_folder() -> Path:
    """Folder of timestamped result files."""
    return env_path("DSLAB_LOG_FOLDER")


def stac_url() -> str:
    """STAC API searched by intake (default: CDSE)."""
    return env_value("DSLAB_S2L1C_STAC_URL", DEFAULT_STAC_URL).rstrip("/")


def cdse_profile() -> str:
    """boto3 profile of the CDSE S3 source (endpoint in the AWS config file)."""
    return env_value("DSLAB_S2L1C_CDSE_PROFILE", "cdse")


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
    """
    target.parent.mkdir(parents=True, exist_ok=True)
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
    joined to: not empty, not absolute, no ``..`` parts."""
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts


def hidden(relative: PurePosixPath | Path) -> bool:
    """True for paths with a part starting with ``.``: this tool's temporary outputs."""
    return any(part.startswith(".") for part in relative.parts)


def producing_step(storage: str, fmt: str) -> str:
    """The command that puts ``fmt`` on ``storage``, for error messages."""
    if storage == "s3":
        return "python -m sentinel2_l1c.publish_s3"
    if storage == "temp":
        return "python -m sentinel2_l1c.stage"
    return {
        "safe": "python -m sentinel2_l1c.intake_cdse_s3_year",
        "cog": "python -m sentinel2_l1c.convert_safe_to_cog",
        "zarr": "python -m sentinel2_l1c.convert_safe_to_zarr",
        "zarr_sharded": "python -m sentinel2_l1c.convert_safe_to_zarr --sharded",
        "zipzarr": "python -m sentinel2_l1c.zip_zarr",
    }[fmt]


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


class ActionLog:
    """A timestamped results JSON of timed actions, rewritten (atomically) after each one."""

    def __init__(self, folder: Path, prefix: str, config: dict[str, Any]) -> None:
        started = datetime.now(UTC)
        self.path = result_path(folder, prefix, started)
        self.data: dict[str, Any] = {
            "started": started.isoformat(),
            "config": config,
            "environment": run_environment(),
            "actions": [],
        }

    def add(self, record: dict[str, Any]) -> None:
        self.data["actions"].append(record)
        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")


def read_json(path: Path) -> dict:
    """A results file; a missing or malformed one is an InputDataError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise InputDataError(f"{path}: not JSON ({err})") from None


def result_path(folder: Path, prefix: str, started: datetime) -> Path:
    """``{folder}/{prefix}_YYYY-MM-DD_HH-MM-SS.json``: the name of a timestamped results file."""
    return folder / f"{prefix}_{started:%Y-%m-%d_%H-%M-%S}.json"


def run_environment() -> dict[str, Any]:
    """Where a measurement was taken: host, CPUs, platform, Python and library versions."""
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


DEFAULT_CONNECTIONS = 8  # concurrent transfers of publish_s3 and stage
SCHEDULER_TIMEOUT = "10s"  # distributed retries a refused connection until then


@contextlib.contextmanager
def dask_scheduler(scheduler: str | None = None, workers: int | None = None) -> Iterator[None]:
    """Run ``dask.compute`` on local threads, or on the dask.distributed cluster at ``scheduler``.

    A cluster (for example one started with dask-jobqueue on Slurm) must see the same files.
    """
    import dask

    if scheduler is None:
        with dask.config.set(scheduler="threads", num_workers=workers or os.cpu_count()):
            yield
        return
    from distributed import Client

    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except OSError as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
    try:
        yield
    finally:
        client.close()


def compute_in_batches(
    function: Callable[[T], Any],
    items: list[T],
    *,
    workers: int | None,
    scheduler: str | None,
    label: str,
    show_progress: bool,
    after_batch: Callable[[list[T], list[Any]], None] | None = None,
) -> list[Any]:
    """``function`` over ``items`` as Dask tasks, a few per worker at a time.

    Batches bound memory and let ``after_batch(items, results)`` record progress, so an
    interrupted run keeps what finished. Returns the results in order.
    """
    import dask

    size = 4 * (workers or os.cpu_count() or 1)
    results: list[Any] = []
    with dask_scheduler(scheduler, workers), progress_bar(len(items), label, show_progress) as bar:
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
# Command-line plumbing
# --------------------------------------------------------------------------------------


def parse_bool(text: str) -> bool:
    """argparse ``type=`` for ``true|false`` flags (``bool('False')`` would be True)."""
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def common_parser() -> argparse.ArgumentParser:
    """Options every command shares (use as a parent parser)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--log_level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="Logging level of messages on stderr.",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="No progress bars and only warnings and errors."
    )
    return parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults; not "None" (the help says where the value comes from) or flags'."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if (
            action.default is None
            or isinstance(action.default, bool)
            or "(default" in (action.help or "")
        ):
            return action.help
        return super()._get_help_string(action)


def new_parser(description: str, prog: str) -> argparse.ArgumentParser:
    """An argument parser with the shared options and defaults shown in ``--help``."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        parents=[common_parser()],
        formatter_class=_HelpFormatter,
    )


def add_conversion_arguments(parser: argparse.ArgumentParser, target_help: str) -> None:
    """Options of the converters: what to convert, where from and to, on which Dask workers."""
    parser.add_argument("--tile", default=None, help="Only this tile (default: every tile found).")
    parser.add_argument(
        "--year", type=int, default=None, help="Only this UTC year (default: every year found)."
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="SAFE root (default: $DSLAB_S2L1C_NETWORK_SAFE_PATH).",
    )
    parser.add_argument("--target", type=Path, default=None, help=target_help)
    parser.add_argument(
        "--workers", type=int, default=None, help="Dask threads (default: CPU count)."
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="Address of a dask.distributed scheduler (e.g. tcp://host:8786) instead of local "
        "threads; its workers must see the same files.",
    )


def add_transfer_arguments(parser: argparse.ArgumentParser, connections_help: str) -> None:
    """Options of the commands that move data and log timings: concurrency, results folder."""
    parser.add_argument(
        "--connections", type=int, default=DEFAULT_CONNECTIONS, help=connections_help
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Results folder (default: $DSLAB_LOG_FOLDER)."
    )


def options_from_args(options_class: type[T], args: argparse.Namespace) -> T:
    """Build an options dataclass from the parsed arguments named like its fields."""
    names = {field.name for field in dataclasses.fields(options_class)}
    return options_class(**{name: value for name, value in vars(args).items() if name in names})


def configure_logging(level: str = "INFO", quiet: bool = False) -> None:
    """Diagnostics to stderr; only ``main`` functions call this."""
    logging.basicConfig(
        level=logging.WARNING if quiet else getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if level != "DEBUG":  # their INFO lines (credential lookups, connections) are noise here
        for name in ("botocore", "boto3", "s3transfer", "urllib3", "rasterio"):
            logging.getLogger(name).setLevel(logging.WARNING)


def run_cli(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    command: Callable[[argparse.Namespace], int | None],
) -> int:
    """Parse ``argv``, set up logging, run ``command``; expected errors become one line."""
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.quiet)
    try:
        return command(args) or 0
    except DslabError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


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
