"""Training steps per job for each way of getting the data to the GPUs, staging time paid.

A training step loads one patch time series of ``--series-years`` tile-years; a job lasts
``--job-days`` and first stages ``--tile-years`` tile-years to temp storage (if its route
stages at all). For each route (direct from S3, S3 → temp copy, S3 zipped → temp, S3 zipped →
temp → unzip, stream-unzip, …):

    steps per job = (job time − tile-years × staging time per tile-year)
                    / (series years × seconds per tile-year patch)

Seconds per patch come from a benchmark results JSON: 1 / the most patches per second its
loader mode measured (many patches in flight, as a training data loader reads), else the
mean time of one load; or from ``--load storage/format=SECONDS``;
staging times from a stage JSON (or ``--staging action:source:format=MINUTES``), taken as
per tile-year (the lab and ``job.sh`` stage one). Prints a table, writes a horizontal bar
chart (PNG) and ``throughput.ods`` (OpenDocument: inputs and results) for spreadsheet users.

Beside what was measured, the table estimates each route for a full-size tile-year (10980 px
at 10 m, the first version's 192 dates, 5100 m patches), scaling what the run measured: a
load by the pixels a full-size patch delivers over those its patch delivered (bytes fetched
and chunks decoded grow with them for a fixed layout), staging by the pixels of a full-size
tile-year over those of the measured one (the benchmark's bounds and dates). Estimates,
labelled so; a measurement at full size needs no scaling (factors 1 but for the dates).

    python -m sentinel2_l1c.throughput --results lab/logs/sentinel2_l1c_*.json \\
        --stage lab/logs/stage_*.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from sentinel2_l1c import formats
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.records.benchmark import BenchmarkResults, read_benchmark
from sentinel2_l1c.run.cli import new_parser, run_cli
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_output

DAY = 86400.0
FULL_TILE_PX = 10980  # a Sentinel-2 tile at 10 m
FULL_DATES = 192  # the first version's real tile-year
FULL_PATCH_M = 5100  # the first version's patch
SAMPLE_BYTES = 2  # uint16


@dataclass(frozen=True)
class Route:
    """How a job reads: where it loads from, and which staging actions come first."""

    label: str
    load: str  # "storage/key" of the benchmark results
    staging: tuple[str, ...]  # "action:source:format" keys of stage results


def routes(load_keys: Iterable[str] = ()) -> list[Route]:
    """Every route the tool can measure, from the registries, in a stable order; then a direct
    route for every other measured "storage/key" (reader variants, formats no longer known)."""
    temp = storages.staging_target()
    found = []
    for source in storages.staging_sources():
        for fmt in formats.FORMATS.values():
            where, name = f"{source.label} {fmt.label}", fmt.label
            found.append(Route(where, f"{source.name}/{fmt.name}", ()))
            found.append(
                Route(
                    f"{where} → {temp.label} {name}",
                    f"{temp.name}/{fmt.name}",
                    (f"copy:{source.name}:{fmt.name}",),
                )
            )
        for fmt in formats.archive_formats():
            unpacked = formats.get(fmt.unpacks_to or "")
            found.append(
                Route(
                    f"{source.label} {fmt.label} → {temp.label} {fmt.label} → {temp.label} "
                    f"{unpacked.label}",
                    f"{temp.name}/{unpacked.name}",
                    (f"copy:{source.name}:{fmt.name}", f"unzip:{temp.name}:{fmt.name}"),
                )
            )
    for fmt in formats.archive_formats():
        unpacked = formats.get(fmt.unpacks_to or "")
        found.append(
            Route(
                f"{storages.STREAM_SOURCE.label} {fmt.label} → stream-unzip → {temp.label} {unpacked.label}",
                f"{temp.name}/{unpacked.name}",
                (f"stream-unzip:{storages.STREAM_SOURCE.name}:{fmt.name}",),
            )
        )
    known = {route.load for route in found}
    for key in dict.fromkeys(load_keys):
        if key not in known:
            storage, _, name = key.partition("/")
            found.append(Route(f"{storages.label(storage)} {formats.label(name)}", key, ()))
    return found


@dataclass(frozen=True)
class Assumptions:
    job_days: float = 3.0
    series_years: int = 5
    tile_years: int = 15

    def __post_init__(self) -> None:
        if self.job_days <= 0 or self.series_years < 1 or self.tile_years < 0:
            raise ConfigError(
                "job_days must be positive, series_years at least 1, tile_years not negative"
            )


@dataclass(frozen=True)
class FullSize:
    """Factors from a run's measurements to a full-size tile-year's (see the docstring)."""

    loads: dict[str, float]  # "storage/key" → full-size patch pixels / measured patch pixels
    staging: float  # full-size tile-year pixels / measured tile-year pixels
    dates: int = FULL_DATES

    @classmethod
    def of(cls, results: BenchmarkResults, dates: int = FULL_DATES) -> FullSize | None:
        """The factors of a results file (None if it recorded no patch bytes or bounds)."""
        delivered: dict[str, list[int]] = {}
        for repeat in results.repeats:
            for key, size in repeat.bytes.items():
                delivered.setdefault(key, []).append(size)
        bounds = results.config.get("bounds")
        shapes = [
            m.band_group_shapes for by_key in results.results.values() for m in by_key.values()
        ]
        measured_dates = next((s[0] for each in shapes for s in each.values()), None)
        if not delivered or not bounds or not measured_dates:
            return None
        patch = full_patch_bytes(dates)
        loads = {key: patch * len(sizes) / sum(sizes) for key, sizes in delivered.items()}
        left, top, right, bottom = bounds
        measured_pixels = (right - left) / 10 * (top - bottom) / 10 * measured_dates
        return cls(loads, FULL_TILE_PX**2 * dates / measured_pixels, dates)


def full_patch_bytes(dates: int = FULL_DATES, patch_m: int = FULL_PATCH_M) -> int:
    """Pixels' bytes of a full-size patch time series: every band at its own resolution."""
    return sum(
        len(group.bands) * (patch_m // group.resolution) ** 2 * dates * SAMPLE_BYTES
        for group in BAND_GROUPS
    )


@dataclass(frozen=True)
class Estimate:
    route: Route
    load_seconds: float
    staging_minutes: float  # for all staged tile-years
    steps: float
    full_size: Estimate | None = None  # the same route scaled to a full-size tile-year


def estimate(
    load_seconds: dict[str, float],
    staging_minutes: dict[str, float],
    assumptions: Assumptions,
    full_size: FullSize | None = None,
) -> list[Estimate]:
    """Steps per job of every route whose load and staging times are all known (and its
    full-size estimate where the loads' scale is known)."""
    found = []
    for route in routes(load_seconds):
        if route.load not in load_seconds or any(s not in staging_minutes for s in route.staging):
            continue
        staging = sum(staging_minutes[s] for s in route.staging)
        measured = _steps(route, load_seconds[route.load], staging, assumptions)
        if full_size is not None and route.load in full_size.loads:
            scaled = _steps(
                route,
                load_seconds[route.load] * full_size.loads[route.load],
                staging * full_size.staging,
                assumptions,
            )
            measured = replace(measured, full_size=scaled)
        found.append(measured)
    return found


def _steps(route: Route, load: float, staging: float, assumptions: Assumptions) -> Estimate:
    """``staging``: minutes per tile-year of the route's staging actions."""
    staging *= assumptions.tile_years
    training = assumptions.job_days * DAY - 60 * staging
    return Estimate(route, load, staging, max(0.0, training / (assumptions.series_years * load)))


def loads_from_results(results: BenchmarkResults) -> dict[str, float]:
    """Seconds per patch per "storage/key": a loader's (1 / best patches/s) where the loader
    mode measured it, else the mean time of one load."""
    best = {key: 1 / rate for key, (rate, _) in results.best_patches_per_second().items()}
    return {**results.means(), **best}


def staging_from_stage(log: ActionLog, tile_years: float = 1.0) -> dict[str, float]:
    """Minutes per tile-year of each "action:source:format" of a stage results file.

    Actions that found their files already in place were not timed from scratch: skipped.
    """
    return {
        action.key: action.seconds / 60 / tile_years
        for action in log.actions
        if not action.skipped_files
    }


def parse_pairs(texts: list[str], what: str, positive: bool) -> dict[str, float]:
    """``KEY=NUMBER`` options; numbers above zero (``positive``) or at least zero."""
    pairs = {}
    for text in texts:
        key, sep, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ConfigError(f"{what} must look like KEY=NUMBER, got {text!r}")
        if not (number > 0 if positive else number >= 0):
            raise ConfigError(
                f"{what} {key.strip()} must be {'above' if positive else 'at least'} 0, got {value}"
            )
        pairs[key.strip()] = number
    return pairs


def table(
    estimates: list[Estimate], assumptions: Assumptions, full_size: FullSize | None = None
) -> list[str]:
    """Measured columns, then the full-size estimates where known; best route first (by the
    full-size estimate where every route has one)."""
    width = max(len(e.route.label) for e in estimates)
    scaled = all(e.full_size for e in estimates)
    lines = [
        f"{assumptions.job_days:g}-day job, {assumptions.series_years}-year patch series, "
        f"{assumptions.tile_years} tile-years staged",
        f"{'route':{width}} {'s/patch':>9} {'staging (min)':>14} {'steps per job':>14}"
        + ("   full-size estimate: s/patch, staging (min), steps per job" if scaled else ""),
    ]
    if scaled and full_size is not None:
        factors = sorted(full_size.loads.values())
        lines.insert(1, (
            f"full-size estimate: a tile-year of {FULL_TILE_PX} px and {full_size.dates} dates, "
            f"{FULL_PATCH_M} m patches: loads × {factors[0]:.3g}–{factors[-1]:.3g} (pixels per "
            f"patch), staging × {full_size.staging:.3g} (pixels per tile-year)"
        ))  # fmt: skip
    for e in sorted(estimates, key=ranking):
        line = f"{e.route.label:{width}} {e.load_seconds:9.3f} {e.staging_minutes:14.1f} {e.steps:14.0f}"
        if scaled and e.full_size:
            full = e.full_size
            line += f"   {full.load_seconds:9.2f} {full.staging_minutes:14.1f} {full.steps:14.0f}"
        lines.append(line)
    return lines


def ranking(estimate: Estimate) -> float:
    """Sort key: most steps first, by the full-size estimate where there is one."""
    return -(estimate.full_size or estimate).steps


def headline(estimates: list[Estimate]) -> str:
    """The route with the most steps per job, in full-size terms where estimated."""
    best = min(estimates, key=ranking)
    if best.full_size is None:
        return f"most training steps per job: {best.route.label} ({best.steps:,.0f})"
    return (
        f"most training steps per job: {best.route.label}: full-size tile-year estimate "
        f"{best.full_size.steps:,.0f} ({best.full_size.load_seconds:.2f} s a patch, "
        f"{best.full_size.staging_minutes:.0f} min staging); measured here {best.steps:,.0f}"
    )


def write_chart(estimates: list[Estimate], assumptions: Assumptions, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(estimates, key=ranking, reverse=True)
    shown = [e.full_size or e for e in ordered]
    figure, axes = plt.subplots(figsize=(11, 0.4 * len(ordered) + 1.6))
    bars = axes.barh([e.route.label for e in shown], [e.steps for e in shown], color="#4488ff")
    axes.bar_label(bars, labels=[f"{e.steps:,.0f}" for e in shown], padding=3, fontsize=8)
    scale = " (full-size tile-year estimate)" if all(e.full_size for e in ordered) else ""
    axes.set_xlabel(
        f"training steps ({assumptions.series_years}-year patch time series) per "
        f"{assumptions.job_days:g}-day job{scale}\nafter staging {assumptions.tile_years} "
        "tile-years"
    )
    axes.margins(x=0.15)
    figure.tight_layout()
    with atomic_output(target) as temp:
        figure.savefig(temp, format="png", dpi=120)
    plt.close(figure)


def write_ods(
    estimates: list[Estimate],
    assumptions: Assumptions,
    load_seconds: dict[str, float],
    staging_minutes: dict[str, float],
    target: Path,
) -> None:
    """Inputs and results as an OpenDocument spreadsheet (two sheets)."""
    import pandas as pd

    inputs = pd.DataFrame(
        [
            ("job length (days)", assumptions.job_days),
            ("patch series length (years)", assumptions.series_years),
            ("tile-years staged", assumptions.tile_years),
            *((f"load time (s) {key}", value) for key, value in sorted(load_seconds.items())),
            *(
                (f"staging time per tile-year (min) {key}", value)
                for key, value in sorted(staging_minutes.items())
            ),
        ],
        columns=["input", "value"],
    )
    results = pd.DataFrame(
        [
            (
                e.route.label,
                e.route.load,
                " + ".join(e.route.staging),
                e.load_seconds,
                e.staging_minutes,
                e.steps,
                *((e.full_size.load_seconds, e.full_size.staging_minutes, e.full_size.steps)
                  if e.full_size else (None, None, None)),
            )
            for e in estimates
        ],
        columns=[
            "route", "load", "staging", "load time (s)", "staging time (min)", "steps per job",
            "full-size estimate: load time (s)", "full-size estimate: staging time (min)",
            "full-size estimate: steps per job",
        ],
    )  # fmt: skip
    with atomic_output(target) as temp:
        with pd.ExcelWriter(temp, engine="odf") as writer:
            inputs.to_excel(writer, sheet_name="inputs", index=False)
            results.to_excel(writer, sheet_name="results", index=False)


def build_parser() -> argparse.ArgumentParser:
    defaults = Assumptions()
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.throughput")
    parser.add_argument("--results", type=Path, help="benchmark_patch_load results JSON.")
    parser.add_argument("--stage", type=Path, help="stage results JSON.")
    parser.add_argument(
        "--load", nargs="+", default=[], metavar="STORAGE/FORMAT=SECONDS",
        help="Mean load times of one tile-year patch (override or replace --results).",
    )  # fmt: skip
    parser.add_argument(
        "--staging", nargs="+", default=[], metavar="ACTION:SOURCE:FORMAT=MINUTES",
        help="Staging minutes per tile-year, e.g. copy:s3:zarr=27 unzip:temp:zipzarr=14 "
        "(override or replace --stage).",
    )  # fmt: skip
    parser.add_argument(
        "--job-days", type=float, default=defaults.job_days, help="Job length in days."
    )
    parser.add_argument(
        "--series-years", type=int, default=defaults.series_years, help="Years in a patch series."
    )
    parser.add_argument(
        "--tile-years", type=int, default=defaults.tile_years, help="Tile-years a job stages."
    )
    parser.add_argument(
        "--full-dates", type=int, default=FULL_DATES,
        help="Dates of the full-size tile-year the estimates scale to (with --results).",
    )  # fmt: skip
    parser.add_argument(
        "--chart", type=Path, default=Path("img/throughput.png"), help="Bar chart (PNG)."
    )
    parser.add_argument(
        "--ods", type=Path, default=Path("throughput.ods"), help="Spreadsheet (OpenDocument)."
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    assumptions = Assumptions(args.job_days, args.series_years, args.tile_years)
    if args.full_dates < 1:
        raise ConfigError(f"--full-dates must be at least 1, got {args.full_dates}")
    results = read_benchmark(args.results) if args.results else None
    load_seconds = loads_from_results(results) if results else {}
    overridden = parse_pairs(args.load, "--load", positive=True)
    load_seconds.update(overridden)
    staging_minutes = staging_from_stage(ActionLog.read(args.stage)) if args.stage else {}
    staging_minutes.update(parse_pairs(args.staging, "--staging", positive=False))
    full_size = FullSize.of(results, args.full_dates) if results else None
    if full_size is not None and overridden:  # given loads have no measured scale
        full_size = FullSize(
            {k: v for k, v in full_size.loads.items() if k not in overridden},
            full_size.staging, full_size.dates,
        )  # fmt: skip
    estimates = estimate(load_seconds, staging_minutes, assumptions, full_size)
    if not estimates:
        raise InputDataError(
            "no route has all its load and staging times: give --results and --stage "
            "(or --load and --staging)"
        )
    for line in table(estimates, assumptions, full_size):
        print(line)
    print(headline(estimates))
    write_chart(estimates, assumptions, args.chart)
    write_ods(estimates, assumptions, load_seconds, staging_minutes, args.ods)
    print(f"chart: {args.chart}\nspreadsheet: {args.ods}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
