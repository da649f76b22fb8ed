"""Timing random patch time-series loads for storages × formats (the benchmark's engine).

A patch is one random 60 m-aligned window of ``patch_size`` metres, read for every band group
and every date of the tile-year. For a seed and repeat the patch and the shuffled order of
storage × key pairs are always the same. Every loader is opened before timing; one uncounted
warm-up loads every pair; each load's pixels are hashed, so formats that disagree are found.
Beside a format with an ideal reference (Zarr) the run times that ideal on the same storage.
Results are rewritten (atomically) after every repeat, so an interrupted run keeps what it
measured. With ``concurrency`` the run then loads a fixed set of ``patches`` from every pair
with that many patches in flight (``loader_mode``). ``benchmark_patch_load`` is the command
line.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from . import formats, storages
from .errors import ConfigError, InputDataError
from .loader_mode import LOADERS, WorkerPool, in_threads
from .loaders import GRID, Catalogue, IdealLoader, Loader, Patch, ZarrLoader, checksum
from .locations import Locations
from .results import IDEAL, BenchmarkResults, IdealMeasurement, Repeat
from .safe import list_products
from .utils import new_result_file, run_environment

NOT_LOCAL = "not applicable (remote)"


@dataclass(frozen=True)
class BenchmarkConfig:
    """The run's parameters; written into the results and read back by reports."""

    storages: tuple[str, ...]
    formats: tuple[str, ...]  # results keys: formats and format@reader variants
    num_repeats: int
    tile: str
    year: int
    bounds: tuple[float, float, float, float]  # x1 (left), y1 (top), x2 (right), y2 (bottom)
    seed: int = 0
    patch_size: int = 5100
    workers: int = 8
    cold: bool = False
    concurrency: tuple[int, ...] = ()  # loader mode: patches in flight (none: not run)
    loader: str = "threads"  # loader mode: threads sharing a loader, or processes
    patches: int = 16  # loader mode: patches per storage × key and concurrency
    loader_formats: tuple[str, ...] | None = None  # loader mode: these keys (None: all)

    def __post_init__(self) -> None:
        for name in self.storages:
            storages.get(name)
        for key in self.formats:
            formats.reader(key)
        if self.num_repeats < 2:
            raise ConfigError(
                f"num_repeats must be at least 2 (for a standard error), got {self.num_repeats}"
            )
        if self.patch_size <= 0 or self.patch_size % GRID:
            raise ConfigError(
                f"patch_size must be a positive multiple of {GRID} m, got {self.patch_size}"
            )
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if any(c < 1 for c in self.concurrency) or self.patches < 1:
            raise ConfigError("concurrency values and patches must be at least 1")
        if not set(self.loader_formats or ()) <= set(self.formats):
            raise ConfigError("loader-mode formats must be among the benchmarked formats")
        if self.loader not in LOADERS:
            raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {self.loader!r}")
        x1, y1, x2, y2 = self.bounds
        if x2 - x1 < self.patch_size or y1 - y2 < self.patch_size:
            raise ConfigError(
                f"a {self.patch_size} m patch does not fit in the bounds {self.bounds} (x1 y1 x2 y2)"
            )

    @property
    def ideal_beside(self) -> str | None:
        """The key the ideal reference is timed beside (a format with an ideal, default reader)."""
        return next(
            (
                key
                for key in self.formats
                if key in formats.FORMATS and formats.get(key).ideal_reader
            ),
            None,
        )

    def pairs(self) -> list[tuple[str, str]]:
        """Storage × key pairs of the run: each storage with the formats it can hold."""
        return [
            (storage, key)
            for storage in self.storages
            for key in self.formats
            if storages.get(storage).holds(formats.reader(key)[0])
        ]

    def ideal_storages(self) -> list[str]:
        """The storages the ideal reference is timed on (those holding its format)."""
        beside = self.ideal_beside
        if beside is None:
            return []
        return [s for s in self.storages if storages.get(s).holds(formats.get(beside))]

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchmarkConfig:
        """A config written by this tool; the first version's ``async_zipfs`` names the reader
        its zipped Zarr was read with (``zipzarr@async_zipfs``, ``zipzarr@zipstore``)."""
        values = dict(data)
        for name in ("storages", "formats", "bounds", "concurrency", "loader_formats"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        values["formats"] = with_zip_reader(values["formats"], values.pop("async_zipfs", None))
        return cls(**values)


def with_zip_reader(keys: tuple[str, ...], async_zipfs: bool | None) -> tuple[str, ...]:
    """The first version's ``--async_zipfs true|false``: zipped Zarr read through async_zipfs
    or through ZipStore; None (not given): through the zipped Zarr's default reader."""
    if async_zipfs is None:
        return keys
    reader = formats.ZIPZARR.reader("async_zipfs" if async_zipfs else "zipstore")
    variant = formats.ZIPZARR.key(reader)
    return tuple(variant if key == formats.ZIPZARR.name else key for key in keys)


def plan_patch(config: BenchmarkConfig, repeat: int) -> Patch:
    """The patch of ``repeat`` (-1: warm-up): the same for the same seed, aligned to 60 m."""
    rng = random.Random(f"{config.seed}/{repeat}/patch")
    x1, y1, x2, y2 = config.bounds
    columns = int((x2 - x1 - config.patch_size) // GRID)
    rows = int((y1 - y2 - config.patch_size) // GRID)
    return Patch(
        x1 + rng.randint(0, columns) * GRID, y1 - rng.randint(0, rows) * GRID, config.patch_size
    )


def loader_patches(config: BenchmarkConfig) -> list[Patch]:
    """The loader mode's patches: the same for every pair and concurrency (not the repeats')."""
    return [plan_patch(config, 100_000 + number) for number in range(config.patches)]


def plan_order(config: BenchmarkConfig, repeat: int) -> list[tuple[str, str]]:
    """Storage × key pairs (and the ideal reference on each storage), shuffled."""
    pairs = config.pairs() + [(storage, IDEAL) for storage in config.ideal_storages()]
    random.Random(f"{config.seed}/{repeat}/order").shuffle(pairs)
    return pairs


def catalogue(config: BenchmarkConfig, locations: Locations) -> Catalogue:
    """The tile-year's products, from the network SAFE copy (the catalogue a job would have)."""
    safe_root = storages.NETWORK.path(locations, formats.SAFE)
    products = list_products(safe_root, config.tile, config.year)
    if not products:
        raise InputDataError(f"{safe_root}: no products of {config.tile} in {config.year}")
    return Catalogue(config.tile, config.year, tuple(products), config.workers)


def open_loader(storage_name: str, key: str, locations: Locations, found: Catalogue) -> Loader:
    """Open one storage × key; missing data is an error naming where and what makes it."""
    storage = storages.get(storage_name)
    fmt, reader = formats.reader(key)
    place = storage.place(locations, fmt)
    made_by = storage.step_for(fmt)
    if not place.exists():
        raise InputDataError(
            f"{place} ({storage.name} {fmt.name}) does not exist: run {made_by} first"
        )
    referenced = (
        None if fmt.references is None else storage.place(locations, formats.get(fmt.references))
    )
    return reader.open(place, found, made_by, referenced)


class Run:
    """One benchmark run: loaders opened, then timed repeats into a results file."""

    def __init__(self, config: BenchmarkConfig, locations: Locations, output: Path) -> None:
        self.config = config
        self.locations = locations
        started = datetime.now(UTC)
        self.results = BenchmarkResults(
            config.tile,
            config.year,
            config=config.to_json(),
            environment=run_environment(locations.network),
            started=started.isoformat(),
        )
        self.output, self.started = output, started
        self.target: Path | None = None
        self.loaders: dict[tuple[str, str], Loader] = {}
        self.found: Catalogue | None = None
        self.cold_files: dict[tuple[str, str], list[Path] | None] = {}

    def open(self) -> None:
        found = self.found = catalogue(self.config, self.locations)
        for storage, key in self.config.pairs():
            self.loaders[(storage, key)] = open_loader(storage, key, self.locations, found)
        for storage in self.config.ideal_storages():
            fmt = formats.get(self.config.ideal_beside or "")
            ideal_key = fmt.key(fmt.reader(fmt.ideal_reader or ""))
            zarr_loader = open_loader(storage, ideal_key, self.locations, found)
            assert isinstance(zarr_loader, ZarrLoader)
            self.loaders[(storage, IDEAL)] = IdealLoader(zarr_loader)

    def close(self) -> None:
        for loader in self.loaders.values():
            loader.close()

    def local_files(self, storage: str, key: str) -> list[Path] | None:
        """The files a load on a local storage may read (None for remote storages)."""
        if (storage, key) not in self.cold_files:
            fmt, _ = formats.reader(self.config.ideal_beside if key == IDEAL else key)
            read = [fmt] if fmt.references is None else [fmt, formats.get(fmt.references)]
            files: list[Path] | None = []
            for each in read:
                path = storages.get(storage).place(self.locations, each).local_path()
                if path is None:
                    files = None
                    break
                files += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            self.cold_files[(storage, key)] = files
        return self.cold_files[(storage, key)]

    def repeat(self, repeat: int) -> None:
        patch = plan_patch(self.config, repeat)
        record = Repeat(repeat, asdict(patch), cold={} if self.config.cold else None)
        for storage, key in plan_order(self.config, repeat):
            if record.cold is not None:
                files = self.local_files(storage, key)
                record.cold[f"{storage}/{key}"] = NOT_LOCAL if files is None else evict(files)
            loader = self.loaders[(storage, key)]
            begin = time.perf_counter()
            loaded = loader.load(patch)
            elapsed = time.perf_counter() - begin
            if key == IDEAL:
                beside = self.config.ideal_beside or ""
                ideal = self.results.ideal.setdefault(
                    storage, IdealMeasurement(beside=beside, reader=loader.stack)
                )
                ideal.add(elapsed)
                ideal.chunks = loaded["chunks"]
                ideal.compressed_bytes = loaded["compressed_bytes"]
                ideal.decompressed_bytes = loaded["decompressed_bytes"]
                continue
            entry = self.results.measurement(storage, key)
            entry.add(elapsed)
            entry.band_group_shapes = {name: list(a.shape) for name, a in loaded.items()}
            entry.reader = {"reader": formats.label(key), **loader.stack}
            entry.layout = loader.layout
            record.checksums[f"{storage}/{key}"] = checksum(loaded)
            record.bytes[f"{storage}/{key}"] = int(sum(a.nbytes for a in loaded.values()))
        self.results.repeats.append(record)
        if self.target is None:  # claimed with the first repeat's results
            self.target = new_result_file(
                self.output, "sentinel2_l1c", self.started, self.results.text()
            )
        else:
            self.results.write(self.target)

    def loader_mode(self, concurrency: int) -> None:
        """Every storage × key with ``concurrency`` patches in flight (no ideal: it is no
        loader of pixels); results rewritten after each concurrency."""
        patches = loader_patches(self.config)
        chosen = self.config.loader_formats or self.config.formats
        pairs = [p for p in plan_order(self.config, -concurrency) if p[1] in chosen]
        if self.config.loader == "threads":
            measured = {
                pair: in_threads(self.loaders[pair], patches, concurrency) for pair in pairs
            }
        else:
            opener = partial(open_loader, locations=self.locations, found=self.found)
            with WorkerPool(opener, pairs, plan_patch(self.config, -1), concurrency) as pool:
                measured = {pair: pool.measure(pair, patches) for pair in pairs}
        for (storage, key), entry in measured.items():
            self.results.throughput.setdefault(storage, {}).setdefault(key, {})[concurrency] = entry
        assert self.target is not None, "after the repeats"
        self.results.write(self.target)


def run_benchmark(
    config: BenchmarkConfig, locations: Locations, output: Path, quiet: bool = False
) -> tuple[Path, BenchmarkResults]:
    """Open everything, warm up, time ``num_repeats`` patches; returns the results file."""
    run = Run(config, locations, output)
    try:
        run.open()
        warm_up = plan_patch(config, -1)
        for pair in plan_order(config, -1):
            run.loaders[pair].load(warm_up)
        for repeat in range(config.num_repeats):
            run.repeat(repeat)
            if not quiet:
                print(
                    f"repeat {repeat + 1}/{config.num_repeats} written to {run.target}",
                    file=sys.stderr,
                )
        for concurrency in config.concurrency:
            run.loader_mode(concurrency)
            if not quiet:
                print(
                    f"{config.patches} patches, {concurrency} in flight ({config.loader}), "
                    f"written to {run.target}",
                    file=sys.stderr,
                )
    finally:
        run.close()
    assert run.target is not None, "written after the first repeat"
    return run.target, run.results


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


def table(results: BenchmarkResults) -> list[str]:
    """Mean ± stderr per storage × key (and ideal), ratios to the fastest and to the ideal."""
    rows = results.rows()
    fastest = min(timing.mean for _, key, timing in rows if key != IDEAL)
    width = max(len("format"), *(len(key) for _, key, _ in rows))
    lines = [
        f"{'storage':8} {'format':{width}} {'mean (s)':>10} {'± stderr':>10} {'× fastest':>10}"
    ]
    for storage, key, timing in rows:
        lines.append(
            f"{storage:8} {key:{width}} {timing.mean:10.3f} {timing.stderr:10.3f} "
            f"{timing.mean / fastest:10.2f}"
        )
    for storage, ideal in results.ideal.items():
        measured = results.results.get(storage, {}).get(ideal.beside)
        if measured is not None:
            lines.append(
                f"{storage} {ideal.beside} / ideal (its {ideal.chunks} chunks fetched and "
                f"decompressed): {measured.mean / ideal.mean:.2f}"
            )
    return lines + loader_table(results)


def loader_table(results: BenchmarkResults) -> list[str]:
    """Patches/s and per-patch latency (p50, p95) per storage × key and patches in flight."""
    rows = [
        (storage, key, concurrency, entry)
        for storage, by_key in results.throughput.items()
        for key, by_concurrency in by_key.items()
        for concurrency, entry in sorted(by_concurrency.items())
    ]
    if not rows:
        return []
    width = max(len("format"), *(len(key) for _, key, _, _ in rows))
    lines = [
        f"{'storage':8} {'format':{width}} {'in flight':>9} {'patches/s':>10} {'p50 (s)':>8} "
        f"{'p95 (s)':>8}  loader"
    ]
    for storage, key, concurrency, entry in rows:
        lines.append(
            f"{storage:8} {key:{width}} {concurrency:9d} {entry.patches_per_second:10.2f} "
            f"{entry.percentile(0.5):8.3f} {entry.percentile(0.95):8.3f}  {entry.loader}"
        )
    return lines
