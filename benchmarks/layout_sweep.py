"""Layouts side by side: which chunks, shards and codec load patches fastest, on which storage?

Builds (or reuses) a lab tile-year (synthetic products, intake to the network drive) and times
decoding every JP2 of it without writing (decode-only: the floor of any conversion). Then, per
candidate (a Zarr format and a named layout of ``cube.layouts``), under the lab's network
profile: converts (timed), publishes to the lab's S3, stages S3 → temp (timed), benchmarks
random patch loads on temp and S3, counts S3 requests and bytes per patch through the lab's
counting proxy, and computes from the layout the chunks a patch touches (amplification = bytes
decompressed / bytes delivered, checked against the ideal reference's count where there is
one) and the objects and bytes of a full-size tile-year (checked against the objects on
disk). Estimates training steps per job on direct S3 and on S3 → temp, full-size equivalents
(load × 192 / dates, staging × full-size bytes / lab bytes). Prints a table, writes
``layout-sweep.json`` (resumable: measured candidates are skipped) and a chart.

    .venv/bin/python benchmarks/layout_sweep.py --lab /tmp/layout-lab --scale 2 --dates 40
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from readers import requests_per_patch  # this folder's request counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats, publish_s3, stage, throughput
from sentinel2_l1c.bench.config import BenchmarkConfig, plan_patch
from sentinel2_l1c.bench.run import run_benchmark
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.demo import DemoOptions, intake, make_source, synthetic_options
from sentinel2_l1c.formats.zarr import ZarrFormat
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations, source_root
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.run.dask_engine import DaskEngine
from sentinel2_l1c.run.parallel import compute_in_batches
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.s2.product import SafeProduct, read_band
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_write_text
from sentinel2_l1c.storage.locations import Locations

DEFAULT_CANDIDATES = [
    "zarr:first_version",
    "zarr_sharded:first_version",
    "zarr_sharded:chunks_256",
    "zarr_sharded:chunks_128",
    "zarr_sharded:chunks_128_lz4",
    "zarr_sharded:chunks_128_zstd1",
    "zarr_sharded:chunks_128_time_40",
]
ALLAS_OBJECT_LIMIT = 500_000  # objects per bucket
#: Candidates this close to the most training steps on S3 → temp tie (about the loads'
#: standard errors over 5 patches); the one with the fewest bytes wins: less to stage and
#: store, faster on direct S3.
TIE = 0.05


@dataclass(frozen=True)
class Candidate:
    fmt: ZarrFormat
    layout: zarr_layouts.ZarrLayout

    @classmethod
    def parse(cls, text: str) -> Candidate:
        name, _, layout = text.partition(":")
        fmt = formats.get(name)
        if not isinstance(fmt, ZarrFormat):
            raise SystemExit(f"{text}: {name} is not a Zarr format made by convert_safe_to_zarr")
        return cls(fmt, zarr_layouts.get(layout or fmt.layout))

    @property
    def name(self) -> str:
        return f"{self.fmt.name}:{self.layout.name}"

    def folder(self, lab: Path) -> Path:
        return lab / "layouts" / f"{self.fmt.name}-{self.layout.name}"

    def locations(self, base: Locations, lab: Path) -> Locations:
        """The lab's locations with this candidate's own folders and bucket for its format."""
        folder, fmt = self.folder(lab), self.fmt
        return base.with_settings(
            {
                storages.NETWORK.variables(fmt)[0]: str(folder / "network" / fmt.file_name),
                storages.TEMP.variables(fmt)[0]: str(folder / "temp" / fmt.file_name),
                storages.S3.variables(fmt)[0]: f"layout-{self.name}".replace("_", "-").replace(
                    ":", "-"
                ),
            }
        )


def decode_only(products: list[SafeProduct], workers: int | None) -> float:
    """Seconds to decode every band file of the products, whole, on the conversion's engine."""
    files = [p.band_path(band) for p in products for g in BAND_GROUPS for band in g.bands]
    begin = time.perf_counter()
    engine = DaskEngine(workers)
    with engine.running():
        compute_in_batches(
            lambda path: read_band(path).nbytes, files, parallel=engine.parallel,
            label="decode-only", show_progress=True,
        )  # fmt: skip
    return time.perf_counter() - begin


def arithmetic(
    candidate: Candidate, products: list[SafeProduct], config: BenchmarkConfig
) -> dict[str, float]:
    """From the layout alone: chunks touched and bytes decompressed and delivered per patch
    (mean over the benchmark's patches; the last patch's, to check against the ideal), and
    objects of the lab's and of a full-size tile-year."""
    touched = decompressed = delivered = last = 0
    for repeat in range(config.num_repeats):
        patch, last = plan_patch(config, repeat), 0
        for group in BAND_GROUPS:
            grid = products[0].grid(group.resolution)
            layout = candidate.layout.of(group, candidate.fmt.sharded)
            shape = (len(products), len(group.bands), *grid.shape)
            window = patch.window(grid.transform.c, grid.transform.f, group.resolution)
            touched += len(zarr_layouts.touched_chunks(shape, layout.chunks, window))
            used, wanted = zarr_layouts.patch_bytes(layout, shape, window)
            decompressed, delivered, last = decompressed + used, delivered + wanted, last + used
    sides = {g.resolution: products[0].grid(g.resolution).shape[0] for g in BAND_GROUPS}
    layout, sharded, n = candidate.layout, candidate.fmt.sharded, config.num_repeats
    return {
        "chunks_per_patch": touched / n,
        "decompressed_mb_per_patch": decompressed / n / 1e6,
        "delivered_mb_per_patch": delivered / n / 1e6,
        "amplification": decompressed / delivered,
        "last_patch_decompressed": last,
        "objects_full_size": zarr_layouts.objects_per_tile_year(layout, sharded),
        "objects_lab": zarr_layouts.objects_per_tile_year(layout, sharded, len(products), sides),
    }


def on_disk(root: Path) -> tuple[int, int]:
    """Objects and bytes of a store folder."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def measure(
    candidate: Candidate,
    args: argparse.Namespace,
    cdse: LocalCdse,
    base: Locations,
    products: list[SafeProduct],
    config: BenchmarkConfig,
) -> dict[str, object]:
    """Convert, publish, stage, benchmark and count one candidate; its data removed after."""
    locations = candidate.locations(base, args.lab)
    fmt, folder = candidate.fmt, candidate.folder(args.lab)
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    target = storages.NETWORK.path(locations, fmt)
    shutil.rmtree(target, ignore_errors=True)
    safe = storages.NETWORK.path(locations, formats.SAFE)
    begin = time.perf_counter()
    convert(ZarrOptions(safe, target, fmt, candidate.layout), show_progress=True)
    conversion = time.perf_counter() - begin
    objects, stored = on_disk(target)
    publish_s3.publish(publish_s3.PublishOptions(formats=(fmt.name,)), locations, logs, True)
    copy = stage.StageOptions((("s3", fmt.name),), overwrite=True)
    staged = ActionLog.read(stage.stage(copy, locations, logs, show_progress=True))
    config = replace(config, formats=(fmt.name,))
    _, results = run_benchmark(config, locations, logs, quiet=True)
    assert not results.mismatches(), results.mismatches()
    counted = replace(config, storages=("s3",))
    requests, fetched = requests_per_patch(counted, locations, cdse)[fmt.name]
    loads = {s: results.measurement(s, fmt.name) for s in config.storages}
    row: dict[str, object] = {
        "candidate": candidate.name,
        "format": fmt.name,
        "layout": candidate.layout.name,
        "summary": candidate.layout.summary(),
        "conversion_s": conversion,
        "objects_lab_on_disk": objects,
        "stored_bytes_lab": stored,
        "staging_s": sum(action.seconds for action in staged.actions),
        "load_s": {s: m.mean for s, m in loads.items()},
        "load_stderr_s": {s: m.stderr for s, m in loads.items()},
        "layout_recorded": {s: m.layout for s, m in loads.items()},
        "ideal_decompressed_last_patch": {
            s: m.decompressed_bytes for s, m in results.ideal.items()
        },
        "s3_requests_per_patch": requests,
        "s3_mb_fetched_per_patch": fetched / 1e6,
        **arithmetic(candidate, products, config),
    }
    if not args.keep_data:
        shutil.rmtree(folder / "network", ignore_errors=True)
        shutil.rmtree(folder / "temp", ignore_errors=True)
        cdse.admin_client().delete_bucket(Bucket=storages.S3.place(locations, fmt).bucket)
    return row


def steps(row: dict, dates: int, full_size_bytes: float, storage_route: str) -> float:
    """Training steps per job of a route (``s3`` direct, or ``s3→temp``) in full-size
    equivalents: loads × FULL_YEAR_DATES / dates, staging × full-size / lab bytes."""
    scale = zarr_layouts.FULL_YEAR_DATES / dates
    fmt = row["format"]
    loads = {f"{s}/{fmt}": seconds * scale for s, seconds in row["load_s"].items()}
    minutes = row["staging_s"] / 60 * full_size_bytes / row["stored_bytes_lab"]
    estimates = throughput.estimate(loads, {f"copy:s3:{fmt}": minutes}, throughput.Assumptions())
    wanted = f"s3/{fmt}" if storage_route == "s3" else f"temp/{fmt}"
    return next(e.steps for e in estimates if e.route.load == wanted and (
        not e.route.staging if storage_route == "s3" else e.route.staging == (f"copy:s3:{fmt}",)
    ))  # fmt: skip


def full_size_bytes(row: dict, products: list[SafeProduct]) -> float:
    """The stored bytes of the lab's tile-year scaled to a full-size one of 192 dates."""
    side = products[0].grid(10).shape[0]
    area = (zarr_layouts.FULL_TILE[10] / side) ** 2
    return row["stored_bytes_lab"] * area * zarr_layouts.FULL_YEAR_DATES / len(products)


def report(sweep: dict, products: list[SafeProduct], chart: Path) -> None:
    rows, decode = sweep["rows"], sweep["decode_only_s"]
    dates = len(products)
    print(f"{dates} dates, tile of {products[0].grid(10).shape[0]} px at 10 m; decode-only "
          f"{decode:.1f} s; network profile of S3: {sweep['network']}")  # fmt: skip
    header = (
        f"{'candidate':34}{'convert':>9}{'temp s':>8}{'s3 s':>8}{'req':>7}{'MB got':>8}"
        f"{'ampl':>6}{'objects':>9}{'GB':>7}{'steps S3':>10}{'S3→temp':>10}"
    )
    print(header)
    for name, row in rows.items():
        size = full_size_bytes(row, products)
        row["bytes_full_size"] = size
        row["steps"] = {r: steps(row, dates, size, r) for r in ("s3", "s3→temp")}
        loads = row["load_s"]
        print(
            f"{name:34}{row['conversion_s'] / decode:8.2f}×{loads.get('temp', 0):8.2f}"
            f"{loads.get('s3', 0):8.2f}{row['s3_requests_per_patch']:7.0f}"
            f"{row['s3_mb_fetched_per_patch']:8.1f}{row['amplification']:6.2f}"
            f"{row['objects_full_size']:9d}{size / 1e9:7.1f}"
            f"{row['steps']['s3']:10.0f}{row['steps']['s3→temp']:10.0f}"
        )
    baseline = rows.get("zarr:first_version")
    within = [n for n, r in rows.items() if r["objects_full_size"] * 15 <= ALLAS_OBJECT_LIMIT]
    most = max(rows[n]["steps"]["s3→temp"] for n in within)
    close = [n for n in within if rows[n]["steps"]["s3→temp"] >= (1 - TIE) * most]
    best = min(close, key=lambda n: rows[n]["bytes_full_size"])
    print(
        f"best within Allas's object limit (15 tile-years a bucket): {best} (the fewest bytes "
        f"of {', '.join(close)}: within {TIE:.0%} of the most S3 → temp steps)"
    )
    if baseline:
        for storage in baseline["load_s"]:
            ratio = rows[best]["load_s"][storage] / baseline["load_s"][storage]
            print(f"  patch load on {storage} / zarr:first_version: {ratio:.2f}×")
    checks = []
    for name, row in rows.items():
        if row["objects_lab_on_disk"] != row["objects_lab"] + 1:  # + the store's root group
            checks.append(f"{name}: {row['objects_lab_on_disk']} objects on disk, computed "
                          f"{row['objects_lab'] + 1}")  # fmt: skip
        for storage, counted in row["ideal_decompressed_last_patch"].items():
            if counted != row["last_patch_decompressed"]:
                checks.append(f"{name} {storage}: ideal decompressed {counted} B, computed "
                              f"{row['last_patch_decompressed']} B")  # fmt: skip
    print("computed objects and amplification agree with the stores: "
          f"{'yes' if not checks else '; '.join(checks)}")  # fmt: skip
    write_chart(rows, chart)
    print(f"chart: {chart}")


def write_chart(rows: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    storages_seen = list(next(iter(rows.values()))["load_s"])
    figure, (loads, amp) = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 1.6), sharey=True)
    height = 0.8 / len(storages_seen)
    for index, storage in enumerate(storages_seen):
        values = [rows[n]["load_s"][storage] for n in names]
        colour = storages.STORAGES[storage].colour
        positions = [i + index * height for i in range(len(names))]
        loads.barh(positions, values, height, color=colour, label=storages.label(storage))
    loads.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names, fontsize=8)
    loads.invert_yaxis()
    loads.set_xlabel("seconds per patch time series (mean)")
    loads.legend(fontsize=8)
    amp.barh(range(len(names)), [rows[n]["amplification"] for n in names], 0.6, color="#888888")
    amp.axvline(1, color="black", linewidth=0.5)
    amp.set_xlabel("read amplification (decompressed / delivered)")
    figure.suptitle("Zarr layouts: random patch loads", fontsize=10)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", type=Path, default=Path("/tmp/layout-lab"))
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--dates", type=int, default=40)
    parser.add_argument("--patch-size", type=int, default=5100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--storages", nargs="+", default=["temp", "s3"])
    parser.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES,
                        help="FORMAT:LAYOUT pairs")  # fmt: skip
    parser.add_argument("--network", default="allas", help="network profile of the lab's S3")
    parser.add_argument("--workers", type=int, default=None, help="conversion workers")
    parser.add_argument("--again", action="store_true", help="measure candidates measured before")
    parser.add_argument("--keep-data", action="store_true", help="keep each candidate's stores")
    args = parser.parse_args()
    interrupt_on_sigterm()  # a kill stops the lab servers too
    candidates = [Candidate.parse(text) for text in args.candidates]
    profile = network.parse(args.network)
    options = DemoOptions(lab=args.lab, scale=args.scale, dates=args.dates)
    args.lab.mkdir(parents=True, exist_ok=True)
    if not source_root(args.lab).exists():
        make_source(options, synthetic_options(options), show_progress=True)
    summary = args.lab / "layout-sweep.json"
    sweep = json.loads(summary.read_text()) if summary.exists() else {"rows": {}}
    with LocalCdse(args.lab, source_root(args.lab), network=profile) as cdse:
        base = cdse.locations(lab_locations(args.lab))
        safe = storages.NETWORK.path(base, formats.SAFE)
        if not safe.exists():
            intake(options, base, show_progress=True)
        products = list_products(safe, options.tile, options.year)
        if "decode_only_s" not in sweep:
            sweep["decode_only_s"] = decode_only(products, args.workers)
            atomic_write_text(summary, json.dumps(sweep, indent=1))
        sweep["network"] = profile.describe()
        left, bottom, right, top = products[0].grid(10).bounds
        config = BenchmarkConfig(
            tuple(args.storages), ("zarr",), args.repeats, options.tile, options.year,
            (left, top, right, bottom), patch_size=args.patch_size,
        )  # fmt: skip
        for candidate in candidates:
            if candidate.name in sweep["rows"] and not args.again:
                continue
            print(f"{candidate.name}: {candidate.layout.summary()}", file=sys.stderr)
            sweep["rows"][candidate.name] = measure(candidate, args, cdse, base, products, config)
            atomic_write_text(summary, json.dumps(sweep, indent=1))
    sweep["rows"] = {c.name: sweep["rows"][c.name] for c in candidates}
    report(sweep, products, args.lab / "layout_sweep.png")
    atomic_write_text(summary, json.dumps(sweep, indent=1))
    print(f"results: {summary}")


if __name__ == "__main__":
    main()
