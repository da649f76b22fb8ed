"""Choose a Zarr layout (chunks, shards, codec) on your own products and storages.

For one tile-year of the SAFE products on the network drive (or a time window of it), per
candidate (a Zarr format and a named layout of ``cube.layouts``): converts it once (timed,
beside decoding every JP2 without writing: the floor of any conversion), publishes it to S3,
stages it S3 → temp and network → temp (timed), and benchmarks random patch loads on each
storage with every reader that decodes the layout's codec (cold, one patch at a time, then
patches/s at each ``--concurrency``). It records bytes and objects (computed from the layout,
counted on the network copy and the bucket), decode CPU per patch on temp, S3 requests and
bytes per patch (counted by a local proxy; for http:// endpoints on this machine only), and
training steps per job of the routes S3 → temp, direct S3, network and network → temp in
full-size equivalents (192 dates, 109.8 km tiles), and checks Allas's quotas for
``--tile-years``. The default rule: the most S3 → temp steps within the quotas; candidates
within 5 % of the most tie, and the one with the fewest bytes wins.

Candidates' stores live beside the configured ones (``…/layout_sweep/FORMAT-LAYOUT`` on the
network drive and temp, a bucket per candidate) and are removed after each candidate unless
``--keep-data``. Results go to ``$DSLAB_LOG_FOLDER/layout_sweep_TILE_YEAR.json``, written after
every candidate (a rerun skips the candidates measured), with a chart beside it.

    python -m sentinel2_l1c.layout_sweep --tile 35VLH --year 2024 --start 2024-05-01 \\
        --end 2024-09-01 --candidates zarr_sharded:chunks_128 zarr_sharded:chunks_128_pcodec
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from sentinel2_l1c import formats, plan, publish_s3, stage, throughput
from sentinel2_l1c.bench.config import BenchmarkConfig, Pair, plan_patch
from sentinel2_l1c.bench.run import catalogue, open_loader, run_benchmark
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats.zarr import ZarrFormat
from sentinel2_l1c.lab.request_count import requests_per_patch
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.run.cli import interrupt_on_sigterm, new_parser, run_cli
from sentinel2_l1c.run.dask_engine import DaskEngine
from sentinel2_l1c.run.parallel import compute_in_batches
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.s2.product import SafeProduct, read_band
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_write_text
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.transfer import delete_bucket

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = (
    "zarr:first_version",
    "zarr_sharded:chunks_128",
    "zarr_sharded:chunks_128_lz4",
    "zarr_sharded:chunks_128_zstd1",
    "zarr_sharded:chunks_128_zstd9",
    "zarr_sharded:chunks_128_zstd19",
    "zarr_sharded:chunks_128_zstd5_noshuffle",
    "zarr_sharded:chunks_128_delta_zstd5",
    "zarr_sharded:chunks_128_pcodec",
    "zarr_sharded:chunks_128_htj2k",
    "zarr_sharded:chunks_128_jpegls",
    "zarr_sharded:chunks_128_jpegxl",
)
REFERENCE = "zarr_sharded:chunks_128"  # zstd-5 chunks_128: what byte ratios are taken against
#: CSC's default Allas quotas (``plan.Quotas``): bytes of a project, objects of a bucket.
ALLAS_BYTES = plan.Quotas().tib * plan.TIB
ALLAS_OBJECTS_PER_BUCKET = plan.Quotas().objects_per_bucket
FINLAND_TILES = len(plan.FINLAND)
#: Candidates this close to the most S3 → temp steps tie (about the loads' standard errors).
TIE = 0.05
ROUTES = {  # name in results → (load storage, staging action or None)
    "s3→temp": ("temp", "copy:s3"),
    "s3": ("s3", None),
    "network": ("network", None),
    "network→temp": ("temp", "copy:network"),
}


@dataclass(frozen=True)
class Candidate:
    fmt: ZarrFormat
    layout: zarr_layouts.ZarrLayout

    @classmethod
    def parse(cls, text: str) -> Candidate:
        name, _, layout = text.partition(":")
        fmt = formats.get(name)
        if not isinstance(fmt, ZarrFormat) or fmt.transactional:
            plain = [
                f.name for f in formats.FORMATS.values()
                if isinstance(f, ZarrFormat) and not f.transactional
            ]  # fmt: skip
            raise ConfigError(f"candidate {text}: choose a format from {', '.join(plain)}")
        candidate = cls(fmt, zarr_layouts.get(layout or fmt.layout))
        candidate.layout.of(BAND_GROUPS[0], fmt.sharded)  # an image codec without shards fails
        return candidate

    @property
    def name(self) -> str:
        return f"{self.fmt.name}:{self.layout.name}"

    def readers(self) -> list[str]:
        """Results keys of the format's Zarr library readers that decode the layout's codec."""
        names = self.layout.codec_names
        return [
            self.fmt.key(reader)
            for reader in self.fmt.readers
            if not (reader.layered or reader.asks_service)
            and all(reader.decodes(name) for name in names)
        ]

    def locations(self, base: Locations) -> Locations:
        """``base`` with this candidate's own folders (``layout_sweep/FORMAT-LAYOUT`` beside
        the configured ones) and bucket for its format."""
        fmt, folder = self.fmt, f"{self.fmt.name}-{self.layout.name}"
        settings = {}
        for storage in (storages.NETWORK, storages.TEMP):
            configured = storage.path(base, fmt)
            settings[storage.variables(fmt)[0]] = str(
                configured.parent / "layout_sweep" / folder / fmt.file_name
            )
        bucket = storages.S3.place(base, fmt).bucket
        suffix = self.layout.name.replace("_", "-")
        settings[storages.S3.variables(fmt)[0]] = f"{bucket[: 62 - len(suffix)]}-{suffix}"
        return base.with_settings(settings)


# --------------------------------------------------------------------------------------
# Arithmetic (pure)
# --------------------------------------------------------------------------------------


def full_size_factor(side_10m: int, dates: int) -> float:
    """Full-size tile-year / measured tile-year: area and dates."""
    area = (zarr_layouts.FULL_TILE[10] / side_10m) ** 2
    return area * zarr_layouts.FULL_YEAR_DATES / dates


def quotas(bytes_full: float, objects_full: int, tile_years: int, years_per_bucket: int) -> dict:
    """Allas's quotas for ``tile_years`` full-size tile-years, a bucket per tile of
    ``years_per_bucket`` years."""
    total = bytes_full * tile_years
    per_bucket = objects_full * years_per_bucket
    return {
        "tile_years": tile_years,
        "bytes": total,
        "bytes_ok": total <= ALLAS_BYTES,
        "objects_per_bucket": per_bucket,
        "objects_ok": per_bucket <= ALLAS_OBJECTS_PER_BUCKET,
    }


def choose_defaults(rows: dict[str, dict]) -> dict[str, str]:
    """Per format, the candidate the README's rule picks: the most S3 → temp steps within
    the quotas; within TIE of the most, the fewest bytes."""
    chosen = {}
    for fmt in dict.fromkeys(row["format"] for row in rows.values()):
        within = {
            name: row for name, row in rows.items()
            if row["format"] == fmt and row["quotas"]["bytes_ok"] and row["quotas"]["objects_ok"]
        }  # fmt: skip
        if not within:
            continue
        most = max(row["steps"]["s3→temp"] for row in within.values())
        close = [n for n, r in within.items() if r["steps"]["s3→temp"] >= (1 - TIE) * most]
        chosen[fmt] = min(close, key=lambda n: within[n]["bytes_full_size"])
    return chosen


def steps_per_job(
    loads: dict[str, float], staging: dict[str, float], fmt: str, factor: float
) -> dict[str, float]:
    """Training steps per job of each route: ``loads`` (storage → seconds per full-size
    patch) and ``staging`` (``copy:SOURCE`` → measured minutes, × ``factor`` to full size)."""
    estimates = throughput.estimate(
        {f"{storage}/{fmt}": seconds for storage, seconds in loads.items()},
        {f"{action}:{fmt}": minutes * factor for action, minutes in staging.items()},
        throughput.Assumptions(),
    )
    found = {}
    for route, (storage, action) in ROUTES.items():
        wanted = (f"{action}:{fmt}",) if action else ()
        for estimate in estimates:
            if estimate.route.load == f"{storage}/{fmt}" and estimate.route.staging == wanted:
                found[route] = estimate.steps
    return found


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def link_products(products: list[SafeProduct], root: Path) -> None:
    """A SAFE root of symlinks to the chosen products (CDSE layout), rebuilt."""
    shutil.rmtree(root, ignore_errors=True)
    for product in products:
        link = root / product.name.cdse_path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(product.path.resolve())


def decode_only(products: list[SafeProduct], workers: int | None, show_progress: bool) -> float:
    """Seconds to decode every band file of the products, whole, on the conversion's engine."""
    files = [p.band_path(band) for p in products for g in BAND_GROUPS for band in g.bands]
    begin = time.perf_counter()
    engine = DaskEngine(workers)
    with engine.running():
        compute_in_batches(
            lambda path: read_band(path).nbytes, files, parallel=engine.parallel,
            label="decode-only", show_progress=show_progress,
        )  # fmt: skip
    return time.perf_counter() - begin


def on_disk(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def decode_cpu(config: BenchmarkConfig, locations: Locations, key: str, patches: int) -> float:
    """CPU seconds (every thread of this process) per patch loaded from temp: the decoding."""
    found = catalogue(config, locations)
    loader = open_loader(Pair.parse("temp", key), locations, found)
    try:
        loader.load(plan_patch(config, -1))
        begin = time.process_time()
        for repeat in range(patches):
            loader.load(plan_patch(config, repeat))
        return (time.process_time() - begin) / patches
    finally:
        loader.close()


@dataclass(frozen=True)
class SweepOptions:
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    storages: tuple[str, ...] = ("temp", "s3", "network")
    repeats: int = 5
    patch_size: int = 5100
    concurrency: tuple[int, ...] = (1, 4)
    patches: int = 8
    tile_years: int = throughput.Assumptions().tile_years  # a job's
    years_per_bucket: int = 5
    workers: int | None = None
    keep_data: bool = False
    again: bool = False


def measure(
    candidate: Candidate,
    options: SweepOptions,
    base: Locations,
    safe_root: Path,
    config: BenchmarkConfig,
    logs: Path,
    show_progress: bool,
) -> dict[str, Any]:
    """Convert, publish, stage, benchmark and count one candidate."""
    locations = candidate.locations(base)
    fmt = candidate.fmt
    target = storages.NETWORK.path(locations, fmt)
    begin = time.perf_counter()
    convert(ZarrOptions(safe_root, target, fmt, candidate.layout, overwrite=True), show_progress)
    conversion = time.perf_counter() - begin
    objects, stored = on_disk(target)
    publish_s3.publish(
        publish_s3.PublishOptions(formats=(fmt.name,)), locations, logs, show_progress
    )
    bucket = storages.S3.place(locations, fmt).files()
    staging = {}
    for source in (storages.S3.name, storages.NETWORK.name):
        copy = stage.StageOptions(((source, fmt.name),), overwrite=True)
        record = ActionLog.read(stage.stage(copy, locations, logs, show_progress))
        staging[f"copy:{source}"] = sum(action.seconds for action in record.actions) / 60
    readers = candidate.readers()
    chosen = tuple(s for s in options.storages)
    bench = replace(config, storages=chosen, formats=tuple(readers), cold=True)
    benchmark_file, results = run_benchmark(bench, locations, logs, quiet=not show_progress)
    if results.mismatches():
        raise InputDataError(f"{candidate.name}: readers disagree: {results.mismatches()}")
    counted = {}
    if "s3" in chosen:
        counted = requests_per_patch(replace(bench, storages=("s3",)), locations)
    row: dict[str, Any] = {
        "candidate": candidate.name,
        "format": fmt.name,
        "layout": candidate.layout.name,
        "codec": candidate.layout.codec.name,
        "summary": candidate.layout.summary(),
        "readers": readers,
        "conversion_s": conversion,
        "objects_on_disk": objects,
        "bytes_on_disk": stored,
        "objects_on_s3": len(bucket),
        "bytes_on_s3": sum(bucket.values()),
        "staging_min": staging,
        "benchmark_results": str(benchmark_file),
        # "storage/key" → seconds: one patch at a time (mean ± stderr, cold), and a patch's
        # share of the time at the best concurrency (the training loader's view)
        "load_one_s": results.means(),
        "load_stderr_s": {
            f"{s}/{k}": m.stderr for s, by_key in results.results.items() for k, m in by_key.items()
        },
        "load_s": throughput.loads_from_results(results),
        "s3_requests_per_patch": {k: v[0] for k, v in counted.items()},
        "s3_mb_per_patch": {k: v[1] / 1e6 for k, v in counted.items()},
        "decode_cpu_s": {key: decode_cpu(bench, locations, key, 3) for key in readers}
        if "temp" in chosen else {},
    }  # fmt: skip
    if not options.keep_data:
        for storage in (storages.NETWORK, storages.TEMP):
            shutil.rmtree(storage.path(locations, fmt).parent, ignore_errors=True)
        place = storages.S3.place(locations, fmt)
        delete_bucket(place.client, place.bucket, place.account.retry)
    return row


def summarise(row: dict[str, Any], products: list[SafeProduct], options: SweepOptions) -> None:
    """Add the full-size figures, steps per job and quotas to a measured row."""
    side, dates = products[0].grid(10).shape[0], len(products)
    factor = full_size_factor(side, dates)
    layout = zarr_layouts.get(row["layout"])
    sides = {g.resolution: products[0].grid(g.resolution).shape[0] for g in BAND_GROUPS}
    sharded = formats.get(row["format"]).sharded  # type: ignore[attr-defined]
    row["objects_computed"] = (
        zarr_layouts.objects_per_tile_year(layout, sharded, dates, sides)
        + zarr_layouts.OBJECTS_PER_STORE
    )
    row["objects_full_size"] = zarr_layouts.objects_per_tile_year(layout, sharded)
    row["bytes_full_size"] = row["bytes_on_disk"] * factor
    per_patch = zarr_layouts.FULL_YEAR_DATES / dates
    fastest: dict[str, str] = {}  # storage → the key of its fastest reader, one at a time
    for key, seconds in row["load_one_s"].items():
        storage = key.partition("/")[0]
        if storage not in fastest or seconds < row["load_one_s"][fastest[storage]]:
            fastest[storage] = key
    row["fastest_reader"] = {storage: key.partition("/")[2] for storage, key in fastest.items()}
    best: dict[str, float] = {}  # storage → full-size seconds a patch: the best reader, at
    for key, seconds in row["load_s"].items():  # one in flight or the best concurrency
        storage, fastest_here = key.partition("/")[0], min(seconds, row["load_one_s"][key])
        best[storage] = min(best.get(storage, math.inf), fastest_here * per_patch)
    row["best_load_full_size_s"] = best
    row["steps"] = steps_per_job(best, row["staging_min"], row["format"], factor)
    row["quotas"] = quotas(
        row["bytes_full_size"],
        row["objects_full_size"],
        options.tile_years,
        options.years_per_bucket,
    )


def report(sweep: dict[str, Any], chart: Path) -> list[str]:
    rows, decode = sweep["rows"], sweep["decode_only_s"]
    reference, safe = rows.get(REFERENCE), sweep["safe_bytes_full_size"]
    lines = [
        f"{sweep['dates']} dates of {sweep['tile']} {sweep['year']}, {sweep['side_10m']} px at "
        f"10 m; decode-only {decode:.1f} s; SAFE band files {safe / 1e9:.1f} GB a full-size tile-year",
        f"{'candidate':38}{'conv':>6}{'GB':>7}{'/ref':>6}{'/SAFE':>6}{'objects':>8}"
        f"{'temp s':>7}{'S3 s':>6}{'net s':>6}{'req':>5}{'MB':>6}{'CPU s':>6}"
        f"{'S3→temp':>9}{'S3':>7}{'net':>7}{'net→temp':>9}{'quota':>6}  S3 reader",
    ]
    for name, row in rows.items():
        fastest, steps = row["fastest_reader"], row["steps"]
        loads = {s: row["load_one_s"][f"{s}/{key}"] for s, key in fastest.items()}
        s3_reader, temp_reader = fastest.get("s3", ""), fastest.get("temp", "")
        ratio = row["bytes_full_size"] / reference["bytes_full_size"] if reference else math.nan
        within = row["quotas"]["bytes_ok"] and row["quotas"]["objects_ok"]
        lines.append(
            f"{name:38}{row['conversion_s'] / decode:5.2f}×{row['bytes_full_size'] / 1e9:7.1f}"
            f"{ratio:6.2f}{row['bytes_full_size'] / safe:6.2f}{row['objects_full_size']:8d}"
            f"{loads.get('temp', math.nan):7.3f}{loads.get('s3', math.nan):6.2f}"
            f"{loads.get('network', math.nan):6.2f}"
            f"{row['s3_requests_per_patch'].get(s3_reader, math.nan):5.0f}"
            f"{row['s3_mb_per_patch'].get(s3_reader, math.nan):6.1f}"
            f"{row['decode_cpu_s'].get(temp_reader, math.nan):6.2f}"
            + "".join(
                f"{steps.get(route, math.nan):{width}.0f}"
                for route, width in zip(ROUTES, (9, 7, 7, 9), strict=True)
            )
            + f"{'ok' if within else 'OVER':>6}  {s3_reader}"
        )
    lines.append(
        "conv: conversion / decode-only; GB, objects: a full-size tile-year; loads: seconds per "
        "measured patch, one at a time, cold, the fastest reader; req, MB: S3 requests and MB "
        "per patch (that reader); CPU s: CPU per patch on temp; steps per job on S3 → temp, "
        f"direct S3, network, network → temp (full-size); quota: Allas for {next(iter(rows.values()))['quotas']['tile_years']} tile-years"
    )
    for fmt, name in sweep["defaults"].items():
        finland = rows[name]["bytes_full_size"] * FINLAND_TILES * 5 / 2**40
        lines.append(
            f"default by the rule for {fmt}: {name.partition(':')[2]} (Finland, {FINLAND_TILES} "
            f"tiles × 5 years: {finland:.1f} TiB; Allas's default quota {ALLAS_BYTES / 2**40:.0f} TiB)"
        )
    write_chart(rows, chart)
    lines.append(f"chart: {chart}")
    return lines


def write_chart(rows: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    figure, (sizes, steps) = plt.subplots(1, 2, figsize=(11, 0.4 * len(names) + 1.6), sharey=True)
    sizes.barh(range(len(names)), [rows[n]["bytes_full_size"] / 1e9 for n in names], color="#888")
    sizes.set_xlabel("GB per full-size tile-year")
    sizes.set_yticks(range(len(names)), names, fontsize=8)
    sizes.invert_yaxis()
    height = 0.8 / len(ROUTES)
    for index, route in enumerate(ROUTES):
        values = [rows[n]["steps"].get(route, 0) for n in names]
        steps.barh([i + index * height - 0.4 for i in range(len(names))], values, height,
                   label=route)  # fmt: skip
    steps.set_xlabel("training steps per job (full-size)")
    steps.legend(fontsize=8)
    figure.suptitle("Zarr layouts and codecs", fontsize=10)
    figure.tight_layout()
    partial = target.with_name(f".{target.name}.partial.png")
    figure.savefig(partial, dpi=110)
    plt.close(figure)
    partial.replace(target)


def sweep(
    options: SweepOptions,
    locations: Locations,
    tile: str,
    year: int,
    window: tuple[date | None, date | None],
    output: Path,
    show_progress: bool,
) -> tuple[Path, list[str]]:
    """Measure every candidate not measured yet; returns the results file and the report."""
    candidates = [Candidate.parse(text) for text in options.candidates]
    safe = storages.NETWORK.path(locations, formats.SAFE)
    start, end = window
    products = [
        p for p in list_products(safe, tile, year)
        if (start is None or p.start_time.date() >= start) and (end is None or p.start_time.date() < end)
    ]  # fmt: skip
    if not products:
        raise InputDataError(f"no products of {tile} {year} in that window under {safe}")
    output.mkdir(parents=True, exist_ok=True)
    results = output / f"layout_sweep_{tile}_{year}.json"
    work = output / f"layout_sweep_{tile}_{year}"
    state = json.loads(results.read_text()) if results.exists() else {}
    ids = [p.product_id for p in products]
    if state.get("products") != ids:
        state = {"products": ids, "rows": {}}  # another selection: measured afresh
    safe_root = work / "safe"
    link_products(products, safe_root)
    state.update(tile=tile, year=year, dates=len(products), side_10m=products[0].grid(10).shape[0])
    band_bytes = sum(
        p.band_path(b).stat().st_size for p in products for g in BAND_GROUPS for b in g.bands
    )
    state["safe_bytes_full_size"] = band_bytes * full_size_factor(state["side_10m"], len(products))
    if "decode_only_s" not in state:
        state["decode_only_s"] = decode_only(products, options.workers, show_progress)
        atomic_write_text(results, json.dumps(state, indent=1))
    left, bottom, right, top = products[0].grid(10).bounds
    config = BenchmarkConfig(
        options.storages, ("zarr",), options.repeats, tile, year, (left, top, right, bottom),
        patch_size=options.patch_size, concurrency=options.concurrency, patches=options.patches,
    )  # fmt: skip
    logs = work / "logs"
    for candidate in candidates:
        if candidate.name in state["rows"] and not options.again:
            continue
        if show_progress:
            print(f"{candidate.name}: {candidate.layout.summary()}", file=sys.stderr)
        row = measure(candidate, options, locations, safe_root, config, logs, show_progress)
        state["rows"][candidate.name] = row
        atomic_write_text(results, json.dumps(state, indent=1))
    state["rows"] = {c.name: state["rows"][c.name] for c in candidates}
    for row in state["rows"].values():
        summarise(row, products, options)
    state["defaults"] = choose_defaults(state["rows"])
    lines = report(state, results.with_suffix(".png"))
    atomic_write_text(results, json.dumps(state, indent=1))
    return results, lines


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.layout_sweep")
    parser.add_argument("--tile", required=True, help="MGRS tile of the products.")
    parser.add_argument("--year", type=int, required=True, help="UTC year of the products.")
    parser.add_argument("--start", type=date.fromisoformat, default=None,
                        help="First date of the time window (default: the year's first).")  # fmt: skip
    parser.add_argument("--end", type=date.fromisoformat, default=None,
                        help="End of the time window, excluded (default: the year's end).")  # fmt: skip
    defaults = SweepOptions()
    parser.add_argument("--candidates", nargs="+", default=list(defaults.candidates),
                        metavar="FORMAT:LAYOUT", help="Zarr formats and named layouts.")  # fmt: skip
    parser.add_argument("--storages", nargs="+", default=list(defaults.storages),
                        choices=("temp", "s3", "network"), help="Storages benchmarked.")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help="Random patches timed per storage and reader (cold).")  # fmt: skip
    parser.add_argument("--patch-size", type=int, default=defaults.patch_size,
                        help="Patch side in metres.")  # fmt: skip
    parser.add_argument("--concurrency", nargs="*", type=int, default=list(defaults.concurrency),
                        help="Patches in flight for patches/s (none: not measured).")  # fmt: skip
    parser.add_argument("--patches", type=int, default=defaults.patches,
                        help="Patches per concurrency.")  # fmt: skip
    parser.add_argument("--tile-years", type=int, default=defaults.tile_years,
                        help="Full-size tile-years the quotas are checked for (default: a job's).")  # fmt: skip
    parser.add_argument("--years-per-bucket", type=int, default=defaults.years_per_bucket,
                        help="Years of a tile in one bucket (objects per bucket).")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, help="Conversion workers.")
    parser.add_argument("--keep-data", action="store_true", help="Keep each candidate's stores.")
    parser.add_argument("--again", action="store_true", help="Measure measured candidates again.")
    parser.add_argument("--output", type=Path, default=None,
                        help="Results folder (default: $DSLAB_LOG_FOLDER).")  # fmt: skip
    return parser


def _run(args: argparse.Namespace) -> int:
    interrupt_on_sigterm()
    if args.repeats < 2:
        raise ConfigError(f"--repeats must be at least 2, got {args.repeats}")
    options = SweepOptions(
        tuple(args.candidates), tuple(args.storages), args.repeats, args.patch_size,
        tuple(args.concurrency), args.patches, args.tile_years, args.years_per_bucket,
        args.workers, args.keep_data, args.again,
    )  # fmt: skip
    for text in options.candidates:
        Candidate.parse(text)
    locations = Locations.from_environment()
    output = locations.results_folder(args.output)
    window = (args.start, args.end)
    results, lines = sweep(options, locations, args.tile, args.year, window, output, not args.quiet)
    print("\n".join([*lines, f"results: {results}"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
