"""Network profiles side by side: does the tool's answer hold off the laptop?

Builds (or reuses) a lab tile-year with every format on the network drive, temp and the lab's
S3 (``readers.build``). Then, under each network profile of the lab's S3: stages every format
from S3 to temp and stream-unzips (timed under that profile), runs the benchmark with the
loader mode at several patches in flight, and estimates training steps per route. Prints
patches/s per storage × format and concurrency, the S3/temp Zarr ratio at one patch in
flight and at the best concurrency, and the route ranking per profile.

Calibrating a profile is running it with several candidate values and keeping the one whose
S3/temp Zarr ratio at one patch in flight matches what was measured on the real system. The
network drive's profiles (``--drives``: the lab's FUSE mount, ``lab/drive.py``) are calibrated
the same way on network/temp, with cold loads (the files out of the page cache first):

    .venv/bin/python benchmarks/network_profiles.py --storages temp s3 --formats zarr \\
        --concurrency 1 --profiles allas,total_mbps=50 allas,total_mbps=100 --no-stage
    .venv/bin/python benchmarks/network_profiles.py --profiles loopback allas
    .venv/bin/python benchmarks/network_profiles.py --storages network temp --formats zarr cog \\
        --concurrency --no-stage --drives lustre lustre,latency_ms=8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from readers import build  # this folder's lab builder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats, stage, throughput
from sentinel2_l1c.bench.config import BenchmarkConfig
from sentinel2_l1c.bench.run import run_benchmark
from sentinel2_l1c.demo import DemoOptions, make_source, synthetic_options
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations, source_root
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.records.benchmark import BenchmarkResults
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages


def measure(
    args: argparse.Namespace,
    options: DemoOptions,
    profile: network.NetworkProfile,
    drive: network.NetworkProfile | None,
):
    """Staging and loader-mode results of one S3 profile and network-drive profile."""
    with LocalCdse(args.lab, source_root(args.lab), network=profile, drive=drive) as cdse:
        locations = cdse.locations(lab_locations(args.lab))
        named = f"{profile.name}-{drive.name if drive else network.FOLDER}"
        logs = args.lab / "logs" / named.replace("*", "").replace(",", "_")
        logs.mkdir(parents=True, exist_ok=True)
        staged = None
        if args.stage:
            copies = tuple(("s3", name) for name in args.formats)
            zipped = any(f.name in args.formats for f in formats.archive_formats())
            choice = stage.StageOptions(copies, stream_unzip=zipped, overwrite=True)
            staged = ActionLog.read(stage.stage(choice, locations, logs, show_progress=False))
        safe = storages.NETWORK.path(locations, formats.SAFE)
        products = list_products(safe, options.tile, options.year)
        left, bottom, right, top = products[0].grid(10).bounds
        config = BenchmarkConfig(
            tuple(args.storages), tuple(args.formats), args.repeats, options.tile, options.year,
            (left, top, right, bottom), patch_size=args.patch_size, cold=args.cold,
            concurrency=tuple(args.concurrency), patches=args.patches, loader=args.loader,
            loader_formats=tuple(args.loader_formats or args.formats),
        )  # fmt: skip
        target, results = run_benchmark(config, locations, logs, quiet=True)
        assert not results.mismatches(), results.mismatches()
        print(f"{profile.describe()}, drive {cdse.drive_description}: {target}", file=sys.stderr)
        return results, staged


def report(runs: dict[str, tuple[BenchmarkResults, ActionLog | None]], concurrency: list[int]):
    names = list(runs)
    for number, name in enumerate(names, 1):
        print(f"P{number}: {name}")
    print(f"patches/s at {', '.join(map(str, concurrency))} in flight under each profile")
    print(f"{'storage format':28}" + "".join(f"{f'P{n}':>32}" for n in range(1, len(names) + 1)))
    first = runs[names[0]][0]
    for storage, by_key in first.throughput.items():
        for key in by_key:
            cells = []
            for name in names:
                entries = runs[name][0].throughput.get(storage, {}).get(key, {})
                cells.append(" ".join(f"{entries[c].patches_per_second:7.2f}" for c in concurrency))
            print(f"{storage + ' ' + key:28}" + "".join(f"{cell:>32}" for cell in cells))
    for name, (results, _) in runs.items():
        means = results.means()
        for key in sorted({k.split("/", 1)[1] for k in means}):
            temp = means.get(f"temp/{key}")
            ratios = [
                f"{storage}/temp {means[f'{storage}/{key}'] / temp:.2f}× "
                f"({means[f'{storage}/{key}']:.2f} s)"
                for storage in ("network", "s3")
                if temp and f"{storage}/{key}" in means
            ]
            if ratios:
                print(f"{name}: {key} one at a time: temp {temp:.2f} s, {', '.join(ratios)}")
    for name, (results, _) in runs.items():
        at = {c: {} for c in concurrency}
        for storage in ("s3", "temp"):
            for c, entry in results.throughput.get(storage, {}).get("zarr", {}).items():
                at[c][storage] = entry.patches_per_second
        if at and all(len(v) == 2 for v in at.values()):
            one = at[concurrency[0]]["temp"] / at[concurrency[0]]["s3"]
            best_s3 = max(v["s3"] for v in at.values())
            best_temp = max(v["temp"] for v in at.values())
            print(
                f"{name}: S3/temp Zarr time per patch at {concurrency[0]} in flight {one:.2f}×, "
                f"at the best concurrency of each {best_temp / best_s3:.2f}×; S3 mean single "
                f"load {results.means().get('s3/zarr', float('nan')):.3f} s"
            )
    rankings = {}
    for name, (results, staged) in runs.items():
        staging = throughput.staging_from_stage(staged) if staged else {}
        loads = throughput.loads_from_results(results)
        estimates = throughput.estimate(loads, staging, throughput.Assumptions())
        rankings[name] = [e.route.label for e in sorted(estimates, key=lambda e: -e.steps)]
        print(f"{name}: routes by training steps per job")
        for line in throughput.table(estimates, throughput.Assumptions())[1:8]:
            print(f"  {line}")
    if len(rankings) > 1:
        orders = list(rankings.values())
        same = all(order == orders[0] for order in orders)
        top = {name: order[0] for name, order in rankings.items() if order}
        print(f"route ranking the same under every profile: {same}; best route: {top}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", type=Path, default=Path("/tmp/network-lab"))
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--dates", type=int, default=24)
    parser.add_argument("--patch-size", type=int, default=5100)
    parser.add_argument("--profiles", nargs="+", default=["loopback", "allas"])
    parser.add_argument(
        "--drives", nargs="+", default=["lustre"],
        help="network-drive profiles (or 'folder'); every S3 profile runs with each",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--warm", dest="cold", action="store_false",
        help="leave the files in the page cache between loads (default: evict them)",
    )  # fmt: skip
    parser.add_argument("--storages", nargs="+", default=list(storages.STORAGES))
    parser.add_argument("--formats", nargs="+", default=list(formats.FORMATS))
    parser.add_argument("--concurrency", nargs="*", type=int, default=[1, 4, 16])
    parser.add_argument("--patches", type=int, default=16)
    parser.add_argument("--loader", default="threads")
    parser.add_argument(
        "--loader-formats", nargs="+", default=None,
        help="formats of the loader mode (default: all but SAFE, whose patches take 15-20 s "
        "here, decode-bound: timed one at a time only)",
    )  # fmt: skip
    parser.add_argument("--no-stage", dest="stage", action="store_false")
    args = parser.parse_args()
    interrupt_on_sigterm()  # a kill stops the lab servers too
    profiles = [network.parse(text) for text in args.profiles]
    drives = [network.drive_option(text) for text in args.drives]
    if args.loader_formats is None:
        args.loader_formats = [name for name in args.formats if name != formats.SAFE.name]
    options = DemoOptions(lab=args.lab, scale=args.scale, dates=args.dates)
    args.lab.mkdir(parents=True, exist_ok=True)
    if not source_root(args.lab).exists():
        make_source(options, synthetic_options(options), show_progress=True)
    with LocalCdse(args.lab, source_root(args.lab), drive=drives[0]) as cdse:
        build(options, cdse.locations(lab_locations(args.lab)), tuple(args.formats))
    runs = {
        f"{p.describe()} | drive {d.describe() if d else network.FOLDER}": measure(
            args, options, p, d
        )
        for p in profiles
        for d in drives
    }
    report(runs, args.concurrency)


if __name__ == "__main__":
    main()
