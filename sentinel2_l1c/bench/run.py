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

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from sentinel2_l1c import formats
from sentinel2_l1c.bench.config import (
    BenchmarkConfig,
    Pair,
    loader_patches,
    plan_order,
    plan_patch,
    warm_up_patch,
)
from sentinel2_l1c.bench.loader_mode import WorkerPool, in_threads
from sentinel2_l1c.bench.soak import MINUTE, soak
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.loaders.base import Catalogue, Loader, ServedLoader, checksum
from sentinel2_l1c.loaders.zarr_arrays import IdealLoader, ZarrLoader
from sentinel2_l1c.records.benchmark import (
    IDEAL,
    BenchmarkResults,
    IdealMeasurement,
    Measurement,
    Repeat,
)
from sentinel2_l1c.records.result_files import new_result_file, run_environment
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations

NOT_LOCAL = "not applicable (remote)"


def catalogue(config: BenchmarkConfig, locations: Locations) -> Catalogue:
    """The tile-year's products, from the network SAFE copy (the catalogue a job would have),
    and the STAC API they were found in."""
    safe_root = storages.NETWORK.path(locations, formats.SAFE)
    products = list_products(safe_root, config.tile, config.year)
    if not products:
        raise InputDataError(f"{safe_root}: no products of {config.tile} in {config.year}")
    return Catalogue(config.tile, config.year, tuple(products), config.workers, locations.stac_url)


def open_loader(pair: Pair, locations: Locations, found: Catalogue) -> Loader:
    """Open one storage × key (the ideal reference: its Zarr loader wrapped); missing data is
    an error naming where and what makes it."""
    storage, fmt = pair.storage, pair.variant.fmt
    place = storage.place(locations, fmt)
    made_by = storage.step_for(fmt)
    if not place.exists():
        raise InputDataError(
            f"{place} ({storage.name} {fmt.name}) does not exist: run {made_by} first"
        )
    referenced = (
        None if fmt.references is None else storage.place(locations, formats.get(fmt.references))
    )
    loader = pair.variant.reader.open(place, found, made_by, referenced)
    if not pair.ideal:
        return loader
    assert isinstance(loader, ZarrLoader), f"the ideal reads through a Zarr loader, not {loader}"
    return IdealLoader(loader)


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
        self.loaders: dict[Pair, Loader] = {}
        self.found: Catalogue | None = None
        self.cold_files: dict[Pair, list[Path] | None] = {}

    def open(self) -> None:
        found = self.found = catalogue(self.config, self.locations)
        for pair in self.config.pairs() + self.config.ideal_pairs():
            self.loaders[pair] = open_loader(pair, self.locations, found)

    def close(self) -> None:
        for loader in self.loaders.values():
            loader.close()

    def local_files(self, pair: Pair) -> list[Path] | None:
        """The files a load on a local storage may read (None for remote storages)."""
        if pair not in self.cold_files:
            fmt = pair.variant.fmt
            read = [fmt] if fmt.references is None else [fmt, formats.get(fmt.references)]
            files: list[Path] | None = []
            for each in read:
                path = pair.storage.place(self.locations, each).local_path()
                if path is None:
                    files = None
                    break
                files += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            self.cold_files[pair] = files
        return self.cold_files[pair]

    def cool(self, pair: Pair) -> None:
        """With ``cold``, evict the files a pair reads before its loader-mode patches (they
        may still share chunks with each other, as patches in flight do)."""
        if self.config.cold and (files := self.local_files(pair)) is not None:
            evict(files)

    def repeat(self, repeat: int) -> None:
        patch = plan_patch(self.config, repeat)
        record = Repeat(repeat, asdict(patch), cold={} if self.config.cold else None)
        for pair in plan_order(self.config, repeat):
            storage = pair.storage.name
            if record.cold is not None:
                files = self.local_files(pair)
                record.cold[pair.name] = NOT_LOCAL if files is None else evict(files)
            loader = self.loaders[pair]
            begin = time.perf_counter()
            loaded = loader.load(patch)
            elapsed = time.perf_counter() - begin
            if pair.ideal:
                beside = self.config.ideal_beside
                assert beside is not None, "an ideal pair is planned beside a variant"
                ideal = self.results.ideal.setdefault(
                    storage, IdealMeasurement(beside=beside.key, reader=loader.stack)
                )
                ideal.add(elapsed)
                ideal.chunks = loaded["chunks"]
                ideal.compressed_bytes = loaded["compressed_bytes"]
                ideal.decompressed_bytes = loaded["decompressed_bytes"]
                continue
            entry = self.results.measurement(storage, pair.key)
            entry.add(elapsed)
            entry.band_group_shapes = {name: list(a.shape) for name, a in loaded.items()}
            entry.reader = {"reader": pair.variant.label, **loader.stack}
            entry.layout = loader.layout
            if isinstance(loader, ServedLoader):
                entry.add_served(loader.served())
            record.checksums[pair.name] = checksum(loaded)
            record.bytes[pair.name] = int(sum(a.nbytes for a in loaded.values()))
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
        pairs = [p for p in plan_order(self.config, -concurrency) if p.key in chosen]
        measured = {}
        if self.config.loader == "threads":
            for pair in pairs:
                self.cool(pair)
                measured[pair] = in_threads(self.loaders[pair], patches, concurrency)
        else:
            opener = partial(open_loader, locations=self.locations, found=self.found)
            with WorkerPool(opener, pairs, warm_up_patch(self.config), concurrency) as pool:
                for pair in pairs:
                    self.cool(pair)
                    measured[pair] = pool.measure(pair, patches)
        for pair, entry in measured.items():
            by_key = self.results.throughput.setdefault(pair.storage.name, {})
            by_key.setdefault(pair.key, {})[concurrency] = entry
        assert self.target is not None, "after the repeats"
        self.results.write(self.target)

    def soak(self, concurrency: int, report: Callable[[str], None]) -> None:
        """Every loader-mode pair soaked for ``duration`` minutes with ``concurrency`` in
        flight (``bench.soak``); results rewritten after each."""
        patches = loader_patches(self.config)
        chosen = self.config.loader_formats or self.config.formats
        for pair in [p for p in plan_order(self.config, -concurrency) if p.key in chosen]:
            self.cool(pair)
            seconds = self.config.duration * MINUTE
            interval = min(MINUTE, seconds / 5)
            tell = lambda line, pair=pair: report(f"soak {pair.name} ×{concurrency}: {line}")  # noqa: E731
            found = soak(self.loaders[pair], patches, concurrency, seconds, interval, tell)
            by_key = self.results.soak.setdefault(pair.storage.name, {})
            by_key.setdefault(pair.key, {})[str(concurrency)] = found.to_json()
            assert self.target is not None, "after the repeats"
            self.results.write(self.target)


def run_benchmark(
    config: BenchmarkConfig, locations: Locations, output: Path, quiet: bool = False
) -> tuple[Path, BenchmarkResults]:
    """Open everything, warm up, time ``num_repeats`` patches; returns the results file."""
    run = Run(config, locations, output)
    try:
        run.open()
        warm_up = warm_up_patch(config)
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
            if config.duration:
                run.soak(concurrency, lambda line: quiet or print(line, file=sys.stderr))
                continue
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
    for storage, key, timing in rows:
        costs = timing.served_means() if isinstance(timing, Measurement) else {}
        if costs:
            lines.append(
                f"{storage} {key} per patch: {costs.get('server_cpu_seconds', math.nan):.3f} s "
                f"of the server's CPU, {costs['link_bytes'] / 1e6:.1f} MB delivered"
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
