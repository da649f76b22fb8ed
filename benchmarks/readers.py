"""Readers side by side: every reader of the Zarr formats on every storage, against each
format's default reader, in several benchmark runs (medians and ranges of the per-run ratios).

Builds (or reuses) a lab tile-year: synthetic products → intake → Zarr, sharded Zarr and
zipped Zarr on the network drive, staged to temp and published to the lab's S3. Then runs
``run_benchmark`` ``--runs`` times (seeds 0, 1, …) and, on the same patches, times the ideal
reference also through s3fs/zarr-python's own store (the ideal before obstore fetched it).
Prints each reader's time over the reader its format had before (zarr-python, async_zipfs),
median and range over the runs, and S3 requests per patch counted by the lab's proxy. The lab's
S3 answers under ``--network`` and its network drive under ``--drive-network`` (as the users'
Allas and Lustre by default); loads are cold (files out of the page cache) unless ``--warm``.

    .venv/bin/python benchmarks/readers.py --lab /tmp/readers-lab --scale 5 --dates 24
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats, publish_s3, stage
from sentinel2_l1c.bench.config import (
    BenchmarkConfig,
    Pair,
    plan_patch,
    warm_up_patch,
)
from sentinel2_l1c.bench.run import catalogue, open_loader, run_benchmark
from sentinel2_l1c.demo import DemoOptions, intake, make_format, make_source, synthetic_options
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations, source_root
from sentinel2_l1c.lab.request_count import requests_per_patch
from sentinel2_l1c.loaders.zarr_arrays import IdealLoader
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages

ZARR_FORMATS = ("zarr", "zarr_sharded", "zipzarr")
#: what each format was read with before tensorstore became the default (ideal: its floor)
FIRST_VERSION_READER = {
    "zarr": "zarr@zarr-python",
    "zarr_sharded": "zarr_sharded@zarr-python",
    "zipzarr": "zipzarr@async_zipfs",
}


def build(
    options: DemoOptions,
    locations,  # noqa: ANN001 - Locations
    names: tuple[str, ...] = ZARR_FORMATS,
) -> None:
    """Products, intake, conversions, temp copies and S3 buckets of the formats ``names``."""
    network = storages.NETWORK
    if not network.path(locations, formats.SAFE).exists():
        intake(options, locations, show_progress=True)
    for name in names:
        fmt = formats.get(name)
        if fmt.made_from is not None:
            source = network.path(locations, formats.get(fmt.made_from))
            make_format(fmt, source, network.path(locations, fmt), show_progress=True)
    logs = locations.results_folder()
    publish_s3.publish(publish_s3.PublishOptions(formats=names), locations, logs, True)
    copies = tuple((network.name, name) for name in names)
    stage.stage(stage.StageOptions(copies), locations, logs, show_progress=True)


def ideal_through_s3fs(config: BenchmarkConfig, locations) -> list[float]:  # noqa: ANN001
    """The ideal of the first version: chunks fetched through zarr-python's s3fs store."""
    zarr_python = open_loader(
        Pair.parse("s3", FIRST_VERSION_READER["zarr"]), locations, catalogue(config, locations)
    )
    ideal = IdealLoader(zarr_python)
    try:
        ideal.load(warm_up_patch(config))  # as in the benchmark
        times = []
        for repeat in range(config.num_repeats):
            begin = time.perf_counter()
            ideal.load(plan_patch(config, repeat))
            times.append(time.perf_counter() - begin)
        return times
    finally:
        ideal.close()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", type=Path, default=Path("/tmp/readers-lab"))
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--patch-size", type=int, default=5100)
    parser.add_argument("--storages", nargs="+", default=["network", "temp", "s3"])
    parser.add_argument("--formats", nargs="+", default=list(ZARR_FORMATS))
    parser.add_argument("--count-only", action="store_true", help="only count S3 requests")
    parser.add_argument(
        "--warm", dest="cold", action="store_false",
        help="leave the files in the page cache between loads (default: evict them)",
    )  # fmt: skip
    network.add_arguments(parser, s3="allas", cdse="loopback", drive="lustre")
    args = parser.parse_args()
    interrupt_on_sigterm()  # a kill stops the lab servers too
    options = DemoOptions(lab=args.lab, scale=args.scale, dates=args.dates)
    args.lab.mkdir(parents=True, exist_ok=True)
    keys = [k for k in formats.reader_keys() if k.partition("@")[0] in args.formats]
    if not source_root(args.lab).exists():  # the local CDSE serves what is there at its start
        make_source(options, synthetic_options(options), show_progress=True)
    with LocalCdse(
        args.lab, source_root(args.lab), args.network, args.cdse_network, args.drive_network
    ) as cdse:
        locations = cdse.locations(lab_locations(args.lab))
        build(options, locations)
        products = list_products(
            storages.NETWORK.path(locations, formats.SAFE), options.tile, options.year
        )
        left, bottom, right, top = products[0].grid(10).bounds

        def config(seed: int) -> BenchmarkConfig:
            return BenchmarkConfig(
                tuple(args.storages), tuple(keys), args.repeats, options.tile, options.year,
                (left, top, right, bottom), seed=seed, patch_size=args.patch_size,
                cold=args.cold,
            )  # fmt: skip

        runs = []
        for seed in range(0 if args.count_only else args.runs):
            target, results = run_benchmark(
                config(seed), locations, locations.results_folder(), True
            )
            assert not results.mismatches(), results.mismatches()
            means = results.means()
            means |= {f"{s}/ideal": e.mean for s, e in results.ideal.items()}
            if "s3" in args.storages:
                means["s3/ideal@s3fs"] = statistics.mean(
                    ideal_through_s3fs(config(seed), locations)
                )
            runs.append(means)
            print(f"run {seed + 1}/{args.runs}: {target}", file=sys.stderr)
        requests = requests_per_patch(config(0), locations) if "s3" in args.storages else {}
    print(f"{len(products)} dates, {args.repeats} patches of {args.patch_size} m per run")
    print(f"S3 {args.network.describe()}; network drive {cdse.drive_description}")
    print(f"{'storage/key':34} {'mean s (median)':>16}  {'/ first version reader':>24}")
    for name in runs[0] if runs else []:
        storage, key = name.split("/")
        baseline = FIRST_VERSION_READER.get(key.partition("@")[0], "zarr@zarr-python")
        ratios = [run[name] / run[f"{storage}/{baseline}"] for run in runs]
        mean = statistics.median(run[name] for run in runs)
        print(f"{name:34} {mean:16.3f}  {spread(ratios):>24}")
    for key, (count, sent) in requests.items():
        print(f"s3/{key}: {count:.1f} S3 requests, {sent / 1e6:.1f} MB per patch")
    if runs:
        summary = args.lab / "readers-summary.json"
        summary.write_text(json.dumps(runs, indent=1))
        print(f"per-run means: {summary}")


if __name__ == "__main__":
    main()
