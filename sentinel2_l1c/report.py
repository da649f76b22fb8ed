"""Charts of benchmark results: mean patch load time per storage × format.

For each results JSON: a horizontal bar chart of mean load times with standard-error bars,
the ideal reference hatched, and each bar's ratio to the fastest; the axis is logarithmic
when the times span more than ``LOG_SPAN``×. Results with a loader mode also get a chart of
patches per second against patches in flight, one line per storage × format. With several
JSONs, one chart per file plus a grouped chart comparing the runs. PNGs go to ``--img`` (default ``img``). Storages and
formats this version does not know are drawn with their names and a neutral colour.

    python -m sentinel2_l1c.report lab/logs/sentinel2_l1c_2026-11-21_10-00-00.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.records.benchmark import IDEAL, BenchmarkResults, read_benchmark
from sentinel2_l1c.run.cli import new_parser, run_cli
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_output

LOG_SPAN = 20.0
OTHER_COLOUR = "#888888"


def rows(results: BenchmarkResults) -> list[tuple[str, float, float]]:
    """(``storage key`` label, mean, stderr) of every measured combination, fastest first;
    the ideal reference included."""
    found = [(f"{storage} {key}", t.mean, t.stderr) for storage, key, t in results.rows()]
    if not found:
        raise InputDataError("the results file has no measurements yet")
    return found


def colour(storage: str) -> str:
    known = storages.STORAGES.get(storage)
    return known.colour if known else OTHER_COLOUR


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, target: Path) -> None:
    with atomic_output(target) as temp:
        figure.savefig(temp, format="png", dpi=120)


def chart(results: BenchmarkResults, target: Path) -> None:
    """One run's chart."""
    plt = _pyplot()
    found = rows(results)[::-1]  # fastest at the top
    measured = [mean for label, mean, _ in found if not label.endswith(IDEAL)]
    fastest = min(measured)
    figure, axes = plt.subplots(figsize=(9, 0.38 * len(found) + 1.6))
    for index, (label, mean, stderr) in enumerate(found):
        ideal = label.endswith(IDEAL)
        axes.barh(
            index, mean, xerr=stderr, color="#dddddd" if ideal else colour(label.split()[0]),
            hatch="//" if ideal else None,
            edgecolor="#666666", capsize=3,
        )  # fmt: skip
        axes.annotate(
            f"{mean:.3g} s  ×{mean / fastest:.2f}", (mean + stderr, index),
            xytext=(6, 0), textcoords="offset points", va="center", fontsize=8,
        )  # fmt: skip
    axes.set_yticks(range(len(found)), [label for label, _, _ in found])
    span = max(m for _, m, _ in found) / min(m for _, m, _ in found)
    if span > LOG_SPAN:
        axes.set_xscale("log")
    axes.margins(x=0.25)
    config = results.config
    axes.set_xlabel(
        f"mean load time of one patch time series (s, ± stderr)\n{results.tile} "
        f"{results.year}, {config.get('patch_size', '?')} m patches, "
        f"{config.get('num_repeats', '?')} repeats"
    )
    axes.set_title("random patch loads by storage × format (ideal: chunks only)", fontsize=10)
    figure.tight_layout()
    _save(figure, target)
    plt.close(figure)


def concurrency_chart(results: BenchmarkResults, target: Path) -> None:
    """Patches/s against patches in flight, one line per storage × key (loader mode)."""
    if not results.throughput:
        raise InputDataError("the results file has no loader-mode measurements (--concurrency)")
    plt = _pyplot()
    import matplotlib.ticker

    figure, axes = plt.subplots(figsize=(9, 5.5))
    styles = ["-", "--", ":", "-."]
    levels: set[int] = set()
    for storage, by_key in results.throughput.items():
        for number, (key, by_concurrency) in enumerate(sorted(by_key.items())):
            concurrency = sorted(by_concurrency)
            levels.update(concurrency)
            axes.plot(
                concurrency, [by_concurrency[c].patches_per_second for c in concurrency],
                styles[number % len(styles)], marker="o", color=colour(storage),
                label=f"{storage} {key}",
            )  # fmt: skip
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(levels), [str(c) for c in sorted(levels)])
    axes.set_yscale("log")
    for axis in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
        axis(matplotlib.ticker.FormatStrFormatter("%g"))
    network = (results.environment.get("network") or {}).get("s3", "a real network")
    entry = next(e for k in results.throughput.values() for c in k.values() for e in c.values())
    axes.set_xlabel(
        f"patches in flight ({entry.loader}, {entry.patches} patches each)\n"
        f"{results.tile} {results.year}, {results.config.get('patch_size', '?')} m patches; "
        f"S3 network: {network}"
    )
    axes.set_ylabel("patches per second")
    axes.set_title("patch loads as a training data loader reads them", fontsize=10)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    _save(figure, target)
    plt.close(figure)


def comparison_chart(runs: list[tuple[str, BenchmarkResults]], target: Path) -> None:
    """Several runs side by side: one bar per run for every storage × format."""
    plt = _pyplot()
    labels = sorted({label for _, data in runs for label, _, _ in rows(data)})
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(labels) * len(runs) + 1.6))
    height = 0.8 / len(runs)
    for number, (name, data) in enumerate(runs):
        means = {label: (mean, stderr) for label, mean, stderr in rows(data)}
        positions = [i + number * height for i, label in enumerate(labels) if label in means]
        values = [means[label] for label in labels if label in means]
        axes.barh(
            positions, [v[0] for v in values], height, xerr=[v[1] for v in values],
            label=name, capsize=2,
        )  # fmt: skip
    axes.set_yticks([i + 0.4 - height / 2 for i in range(len(labels))], labels)
    axes.set_xscale("log")
    axes.set_xlabel("mean load time of one patch time series (s, ± stderr)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, target)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.report")
    parser.add_argument("results", nargs="+", type=Path, help="benchmark results JSON files.")
    parser.add_argument("--img", type=Path, default=Path("img"), help="Folder of the PNGs.")
    return parser


def _run(args: argparse.Namespace) -> int:
    runs = [(path.stem, read_benchmark(path)) for path in args.results]
    for stem, data in runs:
        target = args.img / f"load_times_{stem}.png"
        chart(data, target)
        print(f"chart: {target}")
        found = rows(data)
        width = max((len(label) for label, _, _ in found), default=0)
        for label, mean, stderr in found:
            print(f"  {label:{width}} {mean:8.3f} ± {stderr:.3f} s")
        if data.throughput:
            target = args.img / f"concurrency_{stem}.png"
            concurrency_chart(data, target)
            print(f"chart: {target}")
    if len(runs) > 1:
        target = args.img / "load_times_comparison.png"
        comparison_chart(runs, target)
        print(f"chart: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
