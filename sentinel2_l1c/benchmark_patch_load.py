"""Benchmark random patch time-series loads for every storage × format.

A patch is one random 60 m-aligned window of ``--patch_size`` metres, read for every band
group and every date of the tile-year. For a seed and repeat the patch and the shuffled
storage × format order are always the same. One uncounted warm-up loads every combination
first; stores are opened before any timing. Each load's pixels are hashed: every combination
must return the same pixels for the same patch, or the run ends with exit code 1. Beside every
plain Zarr the run times the ideal: fetching and decompressing only the chunks the patch
touches, all at once on every core (``ideal`` in the results). Results go
to ``$DSLAB_LOG_FOLDER/sentinel2_l1c_YYYY-MM-DD_HH-MM-SS.json``, rewritten (atomically) after
every repeat, so an interrupted run keeps what it measured.

    python -m sentinel2_l1c.benchmark_patch_load --storages network temp --num_repeats 10
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import zarr
from numcodecs import blosc
from rasterio.windows import Window
from zarr.codecs import BloscCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync

from .convert_safe_to_cog import cog_path
from .errors import ConfigError, InputDataError
from .safe import SafeProduct, list_products, read_band
from .stores import close_store, gdal_s3_options, open_local, open_s3
from .utils import (
    BAND_GROUPS,
    FORMATS,
    STORAGES,
    atomic_write_text,
    log_folder,
    new_parser,
    parse_bool,
    parse_tile_id,
    producing_step,
    result_path,
    run_cli,
    run_environment,
    s3_bucket,
    s3_profile,
    s3_zipzarr_key,
    storage_path,
)
from .zarr_store import group_path, is_complete

IDEAL = "ideal"  # the reference measured beside plain Zarr: its chunks fetched and decompressed
GRID = 60  # patches align to the coarsest grid, so every band group gets whole pixels


@dataclass(frozen=True)
class BenchmarkConfig:
    """The run's parameters; written into the results and read back by reports."""

    storages: tuple[str, ...]
    formats: tuple[str, ...]
    num_repeats: int
    tile: str
    year: int
    bounds: tuple[float, float, float, float]  # x1 (left), y1 (top), x2 (right), y2 (bottom)
    async_zipfs: bool = True
    seed: int = 0
    patch_size: int = 5100
    workers: int = 8
    cold: bool = False

    def __post_init__(self) -> None:
        for storage in self.storages:
            if storage not in STORAGES:
                raise ConfigError(f"unknown storage {storage!r}; choose from {', '.join(STORAGES)}")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        if self.num_repeats < 2:
            raise ConfigError(
                f"num_repeats must be at least 2 (for a standard error), got {self.num_repeats}"
            )
        if self.patch_size <= 0 or self.patch_size % GRID:
            raise ConfigError(
                f"patch_size must be a positive multiple of {GRID} m, got {self.patch_size}"
            )
        x1, y1, x2, y2 = self.bounds
        if x2 - x1 < self.patch_size or y1 - y2 < self.patch_size:
            raise ConfigError(
                f"a {self.patch_size} m patch does not fit in the bounds {self.bounds} (x1 y1 x2 y2)"
            )

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchmarkConfig:
        values = dict(data)
        for name in ("storages", "formats", "bounds"):
            values[name] = tuple(values[name])
        return cls(**values)


@dataclass(frozen=True)
class Patch:
    """Upper-left corner and side, in metres of the tile's CRS."""

    x: float
    y: float
    size: int

    def window(self, ulx: float, uly: float, resolution: int) -> Window:
        return Window(
            round((self.x - ulx) / resolution),
            round((uly - self.y) / resolution),
            self.size // resolution,
            self.size // resolution,
        )


def plan_patch(config: BenchmarkConfig, repeat: int) -> Patch:
    """The patch of ``repeat`` (-1: warm-up): the same for the same seed, aligned to 60 m."""
    rng = random.Random(f"{config.seed}/{repeat}/patch")
    x1, y1, x2, y2 = config.bounds
    columns = int((x2 - x1 - config.patch_size) // GRID)
    rows = int((y1 - y2 - config.patch_size) // GRID)
    return Patch(
        x1 + rng.randint(0, columns) * GRID, y1 - rng.randint(0, rows) * GRID, config.patch_size
    )


def plan_order(config: BenchmarkConfig, repeat: int) -> list[tuple[str, str]]:
    """Storage × format pairs (and the ideal reference beside each Zarr), shuffled."""
    pairs = [(storage, fmt) for storage in config.storages for fmt in config.formats]
    if "zarr" in config.formats:
        pairs += [(storage, IDEAL) for storage in config.storages]
    random.Random(f"{config.seed}/{repeat}/order").shuffle(pairs)
    return pairs


def summary(durations: list[float]) -> dict[str, float]:
    """Total, mean, sample standard deviation and standard error (std / √n)."""
    std = statistics.stdev(durations) if len(durations) > 1 else 0.0
    return {
        "total_duration": sum(durations),
        "mean_durations": statistics.mean(durations),
        "std_durations": std,
        "stderr_durations": std / math.sqrt(len(durations)),
    }


# --------------------------------------------------------------------------------------
# Loaders: opened before timing, then asked for patches
# --------------------------------------------------------------------------------------


class ZarrLoader:
    """Zarr, sharded Zarr or zipped Zarr through any store."""

    def __init__(self, store: Any, tile: str, year: int, where: str) -> None:
        self.store = store
        root = zarr.open_group(store, mode="r", zarr_format=3)
        self.arrays, self.origins = {}, {}
        for group in BAND_GROUPS:
            path = group_path(tile, year, group)
            try:
                node = root[path]
            except KeyError:
                raise InputDataError(
                    f"{where}: no group {path}: run convert_safe_to_zarr"
                ) from None
            if not is_complete(node):
                raise InputDataError(
                    f"{where}: group {path} is not complete: rerun convert_safe_to_zarr"
                )
            self.arrays[group.name] = node["data"]
            x, y = node["x"][:2], node["y"][:2]
            self.origins[group.name] = (
                float(x[0]) - group.resolution / 2,
                float(y[0]) + group.resolution / 2,
            )

    def close(self) -> None:
        close_store(self.store)

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        pixels = {}
        for group in BAND_GROUPS:
            w = patch.window(*self.origins[group.name], group.resolution)
            rows, cols = (
                slice(w.row_off, w.row_off + w.height),
                slice(w.col_off, w.col_off + w.width),
            )
            pixels[group.name] = self.arrays[group.name][:, :, rows, cols]
        return pixels


def touched_chunks(
    shape: tuple[int, ...], chunks: tuple[int, ...], window: Window
) -> list[tuple[int, int, int, int]]:
    """Indices of the (time, band, y, x) chunks a window over every time and band touches."""
    times, bands = (-(-shape[i] // chunks[i]) for i in (0, 1))
    rows = range(window.row_off // chunks[2], (window.row_off + window.height - 1) // chunks[2] + 1)
    cols = range(window.col_off // chunks[3], (window.col_off + window.width - 1) // chunks[3] + 1)
    return list(itertools.product(range(times), range(bands), rows, cols))


class IdealLoader:
    """The floor of a Zarr patch load: fetch and decompress only the chunks the patch touches,
    all concurrently (decompression on every core), without slicing or assembling pixels."""

    def __init__(self, zarr_loader: ZarrLoader) -> None:
        self.zarr = zarr_loader
        for array in zarr_loader.arrays.values():
            codecs = array.metadata.codecs
            if not isinstance(codecs[-1], BloscCodec):
                raise InputDataError(
                    f"{array.path}: the ideal reference needs a plain Blosc Zarr, got {codecs}"
                )

    def close(self) -> None:
        pass  # the Zarr loader owns the store

    def chunk_keys(self, patch: Patch) -> list[str]:
        keys = []
        for group in BAND_GROUPS:
            array = self.zarr.arrays[group.name]
            window = patch.window(*self.zarr.origins[group.name], group.resolution)
            for index in touched_chunks(array.shape, array.chunks, window):
                keys.append(f"{array.path}/{array.metadata.encode_chunk_key(index)}")
        return keys

    def load(self, patch: Patch) -> dict[str, int]:
        """Fetch and decompress; returns counts (chunks, compressed and decompressed bytes)."""
        return zarr_sync(self._fetch_and_decode(self.chunk_keys(patch)))

    async def _fetch_and_decode(self, keys: list[str]) -> dict[str, int]:
        store, prototype = self.zarr.store, default_buffer_prototype()

        async def one(key: str) -> tuple[int, int]:
            buffer = await store.get(key, prototype=prototype)
            if buffer is None:  # never written: fill value, nothing to read
                return 0, 0
            raw = buffer.to_bytes()
            return len(raw), len(await asyncio.to_thread(blosc.decompress, raw))

        sizes = await asyncio.gather(*(one(key) for key in keys))
        return {
            "chunks": len(keys),
            "compressed_bytes": sum(s[0] for s in sizes),
            "decompressed_bytes": sum(s[1] for s in sizes),
        }


class FileLoader:
    """SAFE (one JP2 per band) or COG (one file per band group) with parallel windowed reads.

    rasterio releases the GIL while GDAL decodes, and every read opens its own dataset, so
    reads run in parallel threads without a global lock.
    """

    def __init__(
        self,
        products: list[SafeProduct],
        cog_root: Path | None,
        workers: int,
        remote: tuple[str, Path, dict[str, Any]] | None = None,
    ) -> None:
        self.products = products
        self.cog_root = cog_root
        self.pool = ThreadPoolExecutor(workers)
        # (vsis3 prefix, local root it mirrors, GDAL options): read the same files from S3
        self.remote = remote

    def close(self) -> None:
        self.pool.shutdown()

    def where(self, path: Path) -> str | Path:
        """The file to read: local, or its mirror in the bucket."""
        if self.remote is None:
            return path
        prefix, root, _ = self.remote
        return f"{prefix}/{path.relative_to(root).as_posix()}"

    def _read(self, product: SafeProduct, group_name: str, window: Window) -> np.ndarray:
        group = next(g for g in BAND_GROUPS if g.name == group_name)
        with rasterio.Env(**(self.remote[2] if self.remote else {})):
            if self.cog_root is None:
                paths = [self.where(product.band_path(b)) for b in group.bands]
                return np.stack([read_band(path, window) for path in paths])
            with rasterio.open(self.where(cog_path(self.cog_root, product, group))) as dataset:
                return dataset.read(window=window)

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        pixels = {}
        for group in BAND_GROUPS:
            grid = self.products[0].grid(group.resolution)
            window = patch.window(grid.ulx, grid.uly, group.resolution)
            parts = self.pool.map(
                self._read,
                self.products,
                [group.name] * len(self.products),
                [window] * len(self.products),
            )
            pixels[group.name] = np.stack(list(parts))
        return pixels


def open_loader(storage: str, fmt: str, config: BenchmarkConfig) -> ZarrLoader | FileLoader:
    """Open one storage × format; missing data is an error naming where and what makes it."""
    if storage == "s3" and fmt in ("safe", "cog"):
        return _remote_file_loader(fmt, config)
    if storage == "s3":
        bucket = s3_bucket(fmt)
        where = f"s3://{bucket}"
        if fmt == "zipzarr":
            store = open_s3(s3_profile(), bucket, s3_zipzarr_key(), async_zipfs=config.async_zipfs)
            where = f"s3://{bucket}/{s3_zipzarr_key()}"
        else:
            store = open_s3(s3_profile(), bucket)
        return ZarrLoader(store, config.tile, config.year, where)
    path = storage_path(storage, fmt)
    if not path.exists():
        raise InputDataError(
            f"{path} ({storage} {fmt}) does not exist: run {producing_step(storage, fmt)} first"
        )
    if fmt == "safe":
        products = list_products(path, config.tile, config.year)
        if not products:
            raise InputDataError(f"{path}: no products of {config.tile} in {config.year}")
        return FileLoader(products, None, config.workers)
    if fmt == "cog":
        products = list_products(storage_path("network", "safe"), config.tile, config.year)
        missing = [p for p in products if not cog_path(path, p, BAND_GROUPS[0]).is_file()]
        if missing:
            raise InputDataError(
                f"{path}: no COG of {missing[0].product_id}: run convert_safe_to_cog"
            )
        return FileLoader(products, path, config.workers)
    store = open_local(path, zipped=fmt == "zipzarr", async_zipfs=config.async_zipfs)
    return ZarrLoader(store, config.tile, config.year, str(path))


def _remote_file_loader(fmt: str, config: BenchmarkConfig) -> FileLoader:
    """SAFE or COG from the bucket mirroring the network copy, read through GDAL's /vsis3/.

    The network copy serves as the catalogue (which products, which files), as a training
    job would have one; the pixels come from the bucket.
    """
    local = open_loader("network", fmt, config)
    assert isinstance(local, FileLoader)
    local.close()
    network = storage_path("network", fmt)
    remote = (f"/vsis3/{s3_bucket(fmt)}", network, gdal_s3_options(s3_profile()))
    loader = FileLoader(local.products, local.cog_root, config.workers, remote)
    product = local.products[0]
    probe = (
        product.band_path("B01") if fmt == "safe" else cog_path(network, product, BAND_GROUPS[0])
    )
    with rasterio.Env(**remote[2]):
        try:
            rasterio.open(loader.where(probe)).close()
        except rasterio.errors.RasterioError:
            raise InputDataError(
                f"{loader.where(probe)} cannot be read: run {producing_step('s3', fmt)} first"
            ) from None
    return loader


def local_files(storage: str, fmt: str) -> list[Path]:
    """Files a load on a local storage may read (none for S3)."""
    if storage == "s3":
        return []
    path = storage_path(storage, fmt)
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]


def evict(files: list[Path]) -> bool:
    """Drop the files' pages from the OS page cache; False where the platform cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in files:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
    return True


def checksum(pixels: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(pixels):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(pixels[name]).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    config: BenchmarkConfig
    started: datetime
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ideal: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeats: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "tile": self.config.tile,
            "year": self.config.year,
            "results": self.results,
            "ideal": self.ideal,
            "repeats": self.repeats,
            "config": self.config.to_json(),
            "environment": run_environment(),
            "started": self.started.isoformat(),
        }


def run_benchmark(config: BenchmarkConfig, output: Path, quiet: bool = False) -> tuple[Path, Run]:
    """Open everything, warm up, time ``num_repeats`` patches; returns the results file."""
    loaders: dict[tuple[str, str], ZarrLoader | FileLoader] = {}
    try:
        for pair in [(s, f) for s in config.storages for f in config.formats]:
            loaders[pair] = open_loader(*pair, config)
            if pair[1] == "zarr":
                loaders[(pair[0], IDEAL)] = IdealLoader(loaders[pair])
        return _timed_run(config, output, loaders, quiet)
    finally:
        for loader in loaders.values():
            loader.close()


def _timed_run(
    config: BenchmarkConfig, output: Path, loaders: dict[tuple[str, str], Any], quiet: bool
) -> tuple[Path, Run]:
    started = datetime.now(UTC)
    target = result_path(output, "sentinel2_l1c", started)
    run = Run(config, started)
    cold_files: dict[tuple[str, str], list[Path]] = {}
    for pair in plan_order(config, -1):  # warm-up, not recorded
        loaders[pair].load(plan_patch(config, -1))
    for repeat in range(config.num_repeats):
        patch = plan_patch(config, repeat)
        record: dict[str, Any] = {
            "repeat": repeat,
            "patch": asdict(patch),
            "checksums": {},
            "bytes": {},
        }
        for storage, fmt in plan_order(config, repeat):
            if config.cold:
                files = cold_files.setdefault(
                    (storage, fmt), local_files(storage, "zarr" if fmt == IDEAL else fmt)
                )
                record.setdefault("cold", {})[f"{storage}/{fmt}"] = (
                    evict(files) if files else "not applicable (remote)"
                )
            begin = time.perf_counter()
            pixels = loaders[(storage, fmt)].load(patch)
            elapsed = time.perf_counter() - begin
            if fmt == IDEAL:
                entry = run.ideal.setdefault(storage, {"durations": []})
                entry["durations"].append(elapsed)
                entry.update(pixels)  # chunk and byte counts of this patch
                entry.update(summary(entry["durations"]))
                continue
            entry = run.results.setdefault(storage, {}).setdefault(fmt, {"durations": []})
            entry["durations"].append(elapsed)
            entry["band_group_shapes"] = {name: list(a.shape) for name, a in pixels.items()}
            entry.update(summary(entry["durations"]))
            record["checksums"][f"{storage}/{fmt}"] = checksum(pixels)
            record["bytes"][f"{storage}/{fmt}"] = int(sum(a.nbytes for a in pixels.values()))
        run.repeats.append(record)
        atomic_write_text(target, json.dumps(run.to_json(), indent=2) + "\n")
        if not quiet:
            print(f"repeat {repeat + 1}/{config.num_repeats} written to {target}", file=sys.stderr)
    return target, run


def mismatches(run: Run) -> list[str]:
    """Repeats in which some combination returned different pixels."""
    found = []
    for record in run.repeats:
        if len(set(record["checksums"].values())) > 1:
            groups: dict[str, list[str]] = {}
            for pair, value in record["checksums"].items():
                groups.setdefault(value, []).append(pair)
            found.append(
                f"repeat {record['repeat']}: " + " vs ".join(", ".join(p) for p in groups.values())
            )
    return found


def table(run: Run) -> list[str]:
    """Mean ± stderr per storage × format (and ideal), ratios to the fastest and to the ideal."""
    rows = [(s, f, r) for s, formats in run.results.items() for f, r in formats.items()]
    rows += [(s, IDEAL, r) for s, r in run.ideal.items()]
    fastest = min(r["mean_durations"] for s, f, r in rows if f != IDEAL)
    lines = [f"{'storage':8} {'format':13} {'mean (s)':>10} {'± stderr':>10} {'× fastest':>10}"]
    for storage, fmt, r in sorted(rows, key=lambda row: row[2]["mean_durations"]):
        lines.append(
            f"{storage:8} {fmt:13} {r['mean_durations']:10.3f} {r['stderr_durations']:10.3f} "
            f"{r['mean_durations'] / fastest:10.2f}"
        )
    for storage, ideal in run.ideal.items():
        zarr_mean = run.results[storage]["zarr"]["mean_durations"]
        lines.append(
            f"{storage} zarr / ideal (its {ideal['chunks']} chunks fetched and decompressed): "
            f"{zarr_mean / ideal['mean_durations']:.2f}"
        )
    return lines


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def detect(args: argparse.Namespace) -> tuple[str, int, tuple[float, float, float, float]]:
    """Tile, year and bounds from the arguments, else from the network SAFE products."""
    products = list_products(
        storage_path("network", "safe"), parse_tile_id(args.tile) if args.tile else None, args.year
    )
    if not products:
        raise InputDataError(
            f"no L1C products{' of ' + args.tile if args.tile else ''} under "
            f"{storage_path('network', 'safe')}: run intake first"
        )
    tiles = sorted({p.tile for p in products})
    if len(tiles) > 1:
        raise ConfigError(f"products of several tiles ({', '.join(tiles)}): choose one with --tile")
    year = args.year or max(p.year for p in products)
    left, bottom, right, top = products[0].grid(10).bounds
    bounds = (
        args.x1 if args.x1 is not None else left,
        args.y1 if args.y1 is not None else top,
        args.x2 if args.x2 is not None else right,
        args.y2 if args.y2 is not None else bottom,
    )
    return tiles[0], year, bounds


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Benchmark random patch time-series loads for every storage × format.",
        prog="python -m sentinel2_l1c.benchmark_patch_load",
    )
    parser.add_argument(
        "--storages",
        nargs="+",
        default=list(STORAGES),
        choices=STORAGES,
        help="Storages to benchmark.",
    )
    parser.add_argument(
        "--formats", nargs="+", default=list(FORMATS), choices=FORMATS, help="Formats to benchmark."
    )
    parser.add_argument(
        "--num_repeats", type=int, default=10, help="Timed repeats (2 or more), after one warm-up."
    )
    parser.add_argument(
        "--year",
        type=int,
        default=None,
        help="Year (default: the latest in the network SAFE root).",
    )
    parser.add_argument(
        "--tile", default=None, help="Tile (default: the only tile in the network SAFE root)."
    )
    for name, what in (("x1", "left"), ("y1", "top"), ("x2", "right"), ("y2", "bottom")):
        parser.add_argument(
            f"--{name}",
            type=float,
            default=None,
            help=f"{what.capitalize()} edge in the tile's CRS (default: the tile's).",
        )
    parser.add_argument(
        "--async_zipfs",
        type=parse_bool,
        default=True,
        help="Read zipped Zarr through async_zipfs (true) or zarr's ZipStore (false). (default: true)",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of patches and order.")
    parser.add_argument(
        "--patch_size", type=int, default=5100, help="Patch side in metres (a multiple of 60)."
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="Threads for SAFE/COG windowed reads."
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="Evict the files from the OS page cache before each timed load (local storages; "
        "the results say where it was not possible).",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Results folder (default: $DSLAB_LOG_FOLDER)."
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    tile, year, bounds = detect(args)
    config = BenchmarkConfig(
        storages=tuple(args.storages),
        formats=tuple(args.formats),
        num_repeats=args.num_repeats,
        tile=tile,
        year=year,
        bounds=bounds,
        async_zipfs=args.async_zipfs,
        seed=args.seed,
        patch_size=args.patch_size,
        workers=args.workers,
        cold=args.cold,
    )
    target, run = run_benchmark(config, args.output or log_folder(), quiet=args.quiet)
    for line in table(run):
        print(line)
    print(f"results: {target}")
    wrong = mismatches(run)
    if wrong:
        print(
            "error: formats returned different pixels for the same patch: " + "; ".join(wrong),
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
