"""The whole workflow on the offline lab, in one command: ``python -m sentinel2_l1c.demo``.

Creates a lab folder (default ``./lab``) with a small synthetic tile-year standing in for
CDSE's archive, checks it can be read back, and says what it made. Reruns reuse what is
already there. Nothing outside the lab folder is touched.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .errors import InputDataError
from .lab.layout import lab_environment, source_root
from .lab.synthetic import SyntheticOptions, generate
from .safe import list_products
from .utils import atomic_write_text, new_parser, options_from_args, run_cli


@dataclass(frozen=True)
class DemoOptions:
    lab: Path = Path("lab")
    tile: str = "35VLH"
    year: int = 2024
    # 732 px at 10 m (7.3 km): larger than a 5.1 km benchmark patch, small enough for minutes.
    scale: int = 15
    interval_days: int = 5
    duplicates: int = 2
    seed: int = 0


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


def run_demo(options: DemoOptions, show_progress: bool = True) -> list[str]:
    """Run the demo steps; returns the lines of its report."""
    synthetic = synthetic_options(options)
    options.lab.mkdir(parents=True, exist_ok=True)
    report = []
    started = time.perf_counter()
    written, unique, size = make_source(options, synthetic, show_progress)
    grid = 10980 // options.scale
    report.append(
        f"synthetic CDSE archive: {written} L1C products ({unique} datatakes after duplicate "
        f"resolution) of tile {options.tile} in {options.year}, {grid}×{grid} px at 10 m, "
        f"{size / 1e6:.0f} MB under {source_root(options.lab)} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    report.append(f"lab settings: {write_lab_env(options.lab)}")
    return report


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
    parser.add_argument(
        "--interval_days",
        type=int,
        default=defaults.interval_days,
        help="Days between acquisitions.",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="Random seed of the synthetic data."
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    for line in run_demo(options_from_args(DemoOptions, args), show_progress=not args.quiet):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
