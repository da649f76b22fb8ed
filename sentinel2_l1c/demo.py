"""The whole workflow on the offline lab, in one command: ``python -m sentinel2_l1c.demo``.

Creates a lab folder (default ``./lab``) with a small synthetic tile-year standing in for
CDSE's archive, starts the local CDSE (SeaweedFS bucket ``eodata`` and a STAC API) and runs
the year intake against it into the lab's network drive, converts the intaken products to
COG, Zarr, sharded Zarr and zipped Zarr, publishes them to the lab's S3 buckets, stages them
to the lab's temp storage (copy, unzip, stream-unzip), ingests the tile-year once more
straight from the local CDSE into sharded Zarr on S3 (two runs, the second appending) and
plans Finland × 10 years against Allas's quotas, benchmarks patch loads on every
storage × format (one at a time, then with several in flight, as a training data loader
reads), puts the sharded Zarr's default layout beside the first version's and zstd
``chunks_128`` (``layout_sweep``), and says what it made and measured. The lab's S3 answers like Allas, its CDSE like
CDSE and its network drive (a FUSE mount of the lab's filer) like Puhti's Lustre
(``--network``, ``--cdse-network``, ``--drive-network``; ``loopback`` for none, ``folder`` for a
plain network-drive folder). Loads are timed cold (the files out of the page cache), as a
training job over a datacube larger than memory reads them. Servers run only while the demo
runs. Reruns reuse what is already there. Nothing outside the lab folder is touched (the lab
has its own AWS config files).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sentinel2_l1c import (
    convert_safe_to_cog,
    convert_safe_to_zarr,
    file_size_histogram,
    formats,
    index_safe,
    ingest,
    layout_sweep,
    plan,
    publish_s3,
    report,
    stage,
    throughput,
    zip_zarr,
)
from sentinel2_l1c.bench.config import BenchmarkConfig, paired
from sentinel2_l1c.bench.run import run_benchmark, table
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.intake_cdse_s3 import IntakeOptions, run_intake
from sentinel2_l1c.intake_cdse_s3_year import day_windows
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_environment, lab_locations, source_root
from sentinel2_l1c.lab.network import PROFILES, NetworkProfile
from sentinel2_l1c.lab.synthetic import SyntheticOptions, generate
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.records.benchmark import BenchmarkResults
from sentinel2_l1c.run.cli import interrupt_on_sigterm, new_parser, options_from_args, run_cli
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_write_text, tree_size
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.places import BucketPlace


@dataclass(frozen=True)
class DemoOptions:
    lab: Path = Path("lab")
    tile: str = "35VLH"
    year: int = 2024
    # 732 px at 10 m (7.3 km): larger than a 5.1 km benchmark patch, small enough for minutes.
    scale: int = 15
    interval_days: int = 32
    dates: int | None = None  # instead of interval_days: this many acquisitions, evenly spread
    duplicates: int = 2
    seed: int = 0
    repeats: int = 2  # the fewest the benchmark takes: the demo shows every reader in 10 minutes
    img: Path | None = None  # charts; default {lab}/img
    network: NetworkProfile = PROFILES["allas"]  # the lab's S3 storage
    cdse_network: NetworkProfile = PROFILES["cdse"]
    drive_network: NetworkProfile | None = PROFILES["lustre"]  # None: a plain folder
    concurrency: tuple[int, ...] = (1, 4)  # patches in flight of the loader mode
    patches: int = 4  # per storage × format and concurrency


def decoded_per_load() -> set[str]:
    """Formats whose every load decodes JPEG 2000 (SAFE and the virtual formats over its
    files): seconds a patch at the demo's size, so the loader mode leaves them out."""
    return {formats.SAFE.name} | {f.name for f in formats.FORMATS.values() if f.references}


def variants_beyond_their_storage() -> tuple[str, ...]:
    """The pairs the demo leaves out, to stay within minutes: it times each format's other
    readers on one storage, S3 (where the libraries differ most), or the network drive for
    the formats that decode JPEG 2000 at every load (seconds a load on the other storages);
    a coverage service's reader on its service."""
    skipped = []
    for key in formats.reader_keys():
        variant = formats.variant(key)
        home = storages.NETWORK if variant.fmt.name in decoded_per_load() else storages.S3
        if "@" not in key or not paired(home, variant):
            continue
        skipped += [
            f"{storage.name}/{key}"
            for storage in storages.STORAGES.values()
            if storage is not home and paired(storage, variant)
        ]
    return tuple(skipped)


def write_lab_env(lab: Path) -> Path:
    """``lab/lab.env``: the settings that point every module at this lab."""
    lines = [
        f"# Settings of the offline lab; use with: set -a; source {lab / 'lab.env'}; set +a",
        *(f"{name}={value}" for name, value in sorted(lab_environment(lab).items())),
    ]
    target = lab / "lab.env"
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


def synthetic_options(options: DemoOptions) -> SyntheticOptions:
    """The synthetic tile-year of the demo (validated: raises ConfigError)."""
    return SyntheticOptions(
        tile=options.tile,
        start=date(options.year, 1, 1),
        end=date(options.year + 1, 1, 1),
        interval_days=options.interval_days,
        count=options.dates,
        scale=options.scale,
        seed=options.seed,
        duplicates=options.duplicates,
    )


def make_source(
    options: DemoOptions, synthetic: SyntheticOptions, show_progress: bool
) -> tuple[int, int, int]:
    """Synthetic products of the tile-year; returns (written, unique datatakes, bytes)."""
    root = source_root(options.lab)
    written = list(generate(synthetic, root, show_progress=show_progress))
    products = list_products(root, options.tile, options.year)
    if not products:
        raise InputDataError(f"no products readable under {root}")
    size = sum(
        path.stat().st_size for folder in written for path in folder.rglob("*") if path.is_file()
    )
    return len(written), len(products), size


def intake(options: DemoOptions, locations: Locations, show_progress: bool) -> list[str]:
    """Run the year intake against the local CDSE, as against the real one."""
    intake_options = IntakeOptions(
        tile=options.tile,
        windows=tuple(day_windows(options.year, options.year + 1)),
        safe_root=storages.NETWORK.path(locations, formats.SAFE),
        stac_url=locations.stac_url,
        account=locations.cdse_account,
    )
    summary = run_intake(intake_options, show_progress)
    return [f"intake_cdse_s3_year → {intake_options.safe_root}: {line}" for line in summary.lines()]


#: The converter commands by name (a format's ``maker``), each with its ``make``.
MAKERS = {
    command.__name__.rpartition(".")[2]: command.make
    for command in (convert_safe_to_cog, convert_safe_to_zarr, zip_zarr, index_safe)
}


def make_format(fmt: formats.Format, source: Path, target: Path, show_progress: bool) -> list[str]:
    """Make ``fmt`` at ``target`` from its ``made_from`` format at ``source`` with its
    converter (resumable, skips what is done); returns summary lines."""
    if fmt.made_from is None:
        raise ConfigError(f"{fmt.name} is not made by conversion but by {fmt.step}")
    return MAKERS[fmt.maker](fmt, source, target, show_progress)


def convert(locations: Locations, show_progress: bool) -> list[str]:
    """Make every converted format on the network drive from the one it is made from."""
    lines = []
    network = storages.NETWORK
    for fmt in formats.FORMATS.values():
        if fmt.made_from is not None:
            source = network.path(locations, formats.get(fmt.made_from))
            lines += make_format(fmt, source, network.path(locations, fmt), show_progress)
    for fmt in formats.FORMATS.values():
        files, size = tree_size(network.path(locations, fmt))
        lines.append(f"{network.name} {fmt.name}: {files} files, {size / 1e6:.0f} MB")
    return lines


def publish_and_stage(locations: Locations, show_progress: bool) -> tuple[list[str], Path]:
    """Publish every format to the lab's S3 buckets (public-read), then stage to temp: every
    format copied from the network drive, archives downloaded from S3, unzipped, and
    stream-unzipped, each timed from scratch."""
    logs = locations.results_folder()
    published = publish_s3.publish(
        publish_s3.PublishOptions(public=True), locations, logs, show_progress
    )
    copies = [(storages.NETWORK.name, name) for name in formats.FORMATS]
    copies += [(storages.S3.name, fmt.name) for fmt in formats.archive_formats()]
    staged = stage.stage(
        stage.StageOptions(tuple(copies), unzip=True, stream_unzip=True, overwrite=True),
        locations,
        logs,
        show_progress,
    )
    lines = []
    for name, path in (("publish_s3", published), ("stage", staged)):
        if path is None:
            continue
        lines.append(f"{name} → {path}:")
        for action in ActionLog.read(path).actions:
            lines.append(
                f"  {action.action} {action.format} {action.source} → {action.target}: "
                f"{action.files} files, {action.bytes / 1e6:.1f} MB "
                f"({action.skipped_files} already there) in {action.seconds:.1f} s"
            )
    return lines, staged


#: The bucket the demo ingests into, beside the published formats' buckets
INGEST_BUCKET = "sentinel2-l1c-ingested"


def ingest_and_plan(options: DemoOptions, locations: Locations, show_progress: bool) -> list[str]:
    """Ingest the tile-year once more, straight from the local CDSE into a bucket of sharded
    Zarr with one date per chunk, and index it in place in CDSE (``safe_virtual``, the cdse
    storage's manifests): the first half-year, then the rest appended by a second run; then
    plan Finland × 10 years in the default format."""
    fmt = formats.ZARR_SHARDED
    lines = []
    year = datetime(options.year, 1, 1, tzinfo=UTC)
    for end in (
        datetime(options.year, 7, 1, tzinfo=UTC),
        datetime(options.year + 1, 1, 1, tzinfo=UTC),
    ):
        ingest_options = ingest.IngestOptions(
            tiles=(options.tile,),
            window=(year, end),
            zarr=ZarrOptions(
                ingest.default_scratch(locations),
                BucketPlace(locations.s3_account, INGEST_BUCKET),
                fmt,
                zarr_layouts.get(fmt.layout + zarr_layouts.APPEND),
            ),
            stac_url=locations.stac_url,
            account=locations.cdse_account,
        )
        result = ingest.run_ingest(ingest_options, show_progress)
        lines += [
            f"ingest up to {end:%Y-%m-%d} → s3://{INGEST_BUCKET}: {line}" for line in result.lines()
        ]
        in_place = ingest.in_place_options(locations, (options.tile,), (year, end))
        result = ingest.index_in_place(in_place, show_progress)
        lines += [
            f"ingest --format safe_virtual up to {end:%Y-%m-%d} → {in_place.target}: {line}"
            for line in result.lines()
        ]
    cube = plan.Cube(plan.FINLAND, tuple(range(2016, 2026)), fmt, zarr_layouts.get(fmt.layout))
    lines += [f"plan: {line}" for line in plan.make_plan(cube).lines()]
    return lines


def run_demo(options: DemoOptions, show_progress: bool = True) -> list[str]:
    """Run the demo steps; returns the lines of its report."""
    synthetic = synthetic_options(options)
    options.lab.mkdir(parents=True, exist_ok=True)
    summary = []
    started = time.perf_counter()
    written, unique, size = make_source(options, synthetic, show_progress)
    grid = 10980 // options.scale
    summary.append(
        f"synthetic CDSE archive: {written} L1C products ({unique} datatakes after duplicate "
        f"resolution) of tile {options.tile} in {options.year}, {grid}×{grid} px at 10 m, "
        f"{size / 1e6:.0f} MB under {source_root(options.lab)} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    summary.append(f"lab settings: {write_lab_env(options.lab)}")
    with LocalCdse(
        options.lab, source_root(options.lab), options.network, options.cdse_network,
        options.drive_network, service=True,
    ) as cdse:  # fmt: skip
        assert cdse.stac is not None
        locations = cdse.locations(lab_locations(options.lab))
        summary.append(
            f"local CDSE and lab S3 storage: SeaweedFS at {cdse.store.endpoint} (bucket eodata "
            f"and the lab's buckets), STAC API at {cdse.stac.url}; networks: lab S3 "
            f"{options.network.describe()}, CDSE {options.cdse_network.describe()}, "
            f"network drive {cdse.drive_description}"
        )
        summary += intake(options, locations, show_progress)
        summary += convert(locations, show_progress)
        lines, staged = publish_and_stage(locations, show_progress)
        summary += lines
        summary += ingest_and_plan(options, locations, show_progress)
        lines, results = benchmark(options, locations)
        summary += lines
        summary += reports(locations, results, staged, options.img or options.lab / "img")
        summary += compare_layouts(options, locations, show_progress)
    return summary


def patch_size(locations: Locations, options: DemoOptions) -> int:
    """5100 m, or half the lab's tile side (small lab tiles get smaller patches)."""
    safe_root = storages.NETWORK.path(locations, formats.SAFE)
    left, _, right, _ = list_products(safe_root, options.tile, options.year)[0].grid(10).bounds
    return min(5100, int((right - left) // 2 // 60 * 60))


def benchmark(options: DemoOptions, locations: Locations) -> tuple[list[str], BenchmarkResults]:
    """Patch loads from every storage in every format, with every reader."""
    safe_root = storages.NETWORK.path(locations, formats.SAFE)
    products = list_products(safe_root, options.tile, options.year)
    left, bottom, right, top = products[0].grid(10).bounds
    config = BenchmarkConfig(
        storages=tuple(storages.STORAGES),
        formats=tuple(formats.reader_keys()),
        num_repeats=options.repeats,
        tile=options.tile,
        year=options.year,
        bounds=(left, top, right, bottom),
        seed=options.seed,
        patch_size=patch_size(locations, options),
        concurrency=options.concurrency,
        patches=options.patches,
        cold=True,
        loader_formats=tuple(name for name in formats.FORMATS if name not in decoded_per_load()),
        skip=variants_beyond_their_storage(),
    )
    target, results = run_benchmark(config, locations, locations.results_folder(), quiet=True)
    wrong = results.mismatches()
    if wrong:
        raise InputDataError("formats returned different pixels: " + "; ".join(wrong))
    return [f"benchmark_patch_load → {target}:", *table(results)], results


def compare_layouts(options: DemoOptions, locations: Locations, show_progress: bool) -> list[str]:
    """The sharded Zarr's default layout beside the first version's and zstd ``chunks_128``,
    measured by ``layout_sweep`` on the lab's products (2 repeats, no loader mode)."""
    fmt = formats.ZARR_SHARDED.name
    layouts = dict.fromkeys(["first_version", "chunks_128", formats.ZARR_SHARDED.layout])
    sweep_options = layout_sweep.SweepOptions(
        candidates=tuple(f"{fmt}:{layout}" for layout in layouts),
        repeats=2,
        patch_size=patch_size(locations, options),
        concurrency=(),
    )
    results, lines = layout_sweep.sweep(
        sweep_options, locations, options.tile, options.year, (None, None),
        locations.results_folder(), show_progress,
    )  # fmt: skip
    return [f"layout_sweep → {results}:", *lines]


def reports(locations: Locations, results: BenchmarkResults, staged: Path, img: Path) -> list[str]:
    """Training throughput per route, load-time chart, object sizes of the Zarr stores on S3."""
    loads = throughput.loads_from_results(results)
    staging = throughput.staging_from_stage(ActionLog.read(staged))
    assumptions = throughput.Assumptions()
    full_size = throughput.FullSize.of(results)
    estimates = throughput.estimate(loads, staging, assumptions, full_size)
    charts = [img / "load_times.png", img / "throughput.png"]
    report.chart(results, charts[0])
    if results.throughput:
        charts.append(img / "concurrency.png")
        report.concurrency_chart(results, charts[-1])
    throughput.write_chart(estimates, assumptions, charts[1])
    spreadsheet = img / "throughput.ods"
    throughput.write_ods(estimates, assumptions, loads, staging, spreadsheet)
    for name in file_size_histogram.CHUNKED:
        charts.append(img / f"file_sizes_{storages.S3.name}_{name}.png")
        objects = file_size_histogram.object_sizes(locations, storages.S3.name, name)
        groups = file_size_histogram.sizes_by_group(objects)
        file_size_histogram.histogram(
            groups, f"object sizes of the {storages.S3.name} {name} store", charts[-1]
        )
    winner = next(label for label, _, _ in report.rows(results) if not label.endswith(report.IDEAL))
    return [
        "throughput:",
        *throughput.table(estimates, assumptions, full_size),
        f"charts: {', '.join(str(chart) for chart in charts)}",
        f"spreadsheet: {spreadsheet}",
        f"fastest patch loads (measured here): {winner}",
        throughput.headline(estimates),
    ]


def build_parser() -> argparse.ArgumentParser:
    defaults = DemoOptions()
    parser = new_parser(
        "Run the datacube-storage-lab workflow on the offline lab (synthetic data, local servers).",
        prog="python -m sentinel2_l1c.demo",
    )
    parser.add_argument(
        "--lab", type=Path, default=defaults.lab, help="Lab folder to create or reuse."
    )
    parser.add_argument("--tile", default=defaults.tile, help="MGRS tile of the synthetic archive.")
    parser.add_argument(
        "--year", type=int, default=defaults.year, help="Year of the synthetic archive."
    )
    parser.add_argument(
        "--scale", type=int, default=defaults.scale, help="Tile size divisor (must divide 1830)."
    )
    dates = parser.add_mutually_exclusive_group()
    dates.add_argument(
        "--interval-days",
        type=int,
        default=defaults.interval_days,
        help=f"Days between acquisitions (default: {defaults.interval_days}).",
    )
    dates.add_argument(
        "--dates", type=int, default=None, help="Acquisitions in the year, evenly spread."
    )
    parser.add_argument(
        "--repeats", type=int, default=defaults.repeats, help="Benchmark repeats (at least 2)."
    )
    parser.add_argument(
        "--img", type=Path, default=None, help="Folder of the charts (default: LAB/img)."
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="Random seed of the synthetic data."
    )
    network.add_arguments(
        parser, s3=defaults.network.name, cdse=defaults.cdse_network.name,
        drive=defaults.drive_network.name if defaults.drive_network else network.FOLDER,
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", nargs="*", type=int, default=list(defaults.concurrency), metavar="N",
        help="Patches in flight of the benchmark's loader mode (none: not run).",
    )  # fmt: skip
    parser.add_argument(
        "--patches", type=int, default=defaults.patches,
        help="Loader-mode patches per storage × format and concurrency.",
    )  # fmt: skip
    return parser


def _run(args: argparse.Namespace) -> int:
    interrupt_on_sigterm()
    options = options_from_args(DemoOptions, args, concurrency=tuple(args.concurrency))
    for line in run_demo(options, show_progress=not args.quiet):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
