"""Copy a tile's Sentinel-2 L1C products of whole UTC years from CDSE, one STAC query per day.

Daily queries keep every answer small (no reliance on an API's paging limits over a year)
and match how intake runs operationally, day by day. Downloads behave as in
``intake_cdse_s3``: atomic per product, resumable, retried, at most 4 connections.

    python -m sentinel2_l1c.intake_cdse_s3_year --tile 35VLH --year-start 2024 --year-end 2025
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.intake_cdse_s3 import (
    Window,
    add_common_arguments,
    options_for,
    report,
    run_intake,
)
from sentinel2_l1c.run.cli import new_parser, run_cli


def day_windows(year_start: int, year_end: int) -> list[Window]:
    """Every UTC day of the years ``year_start`` … ``year_end - 1`` as [start, end) windows."""
    if year_end <= year_start:
        raise ConfigError(
            f"--year-end {year_end} must be after --year-start {year_start} (it is excluded)"
        )
    if not 1900 < year_start < 2200:
        raise ConfigError(f"--year-start {year_start} is not a plausible year")
    return days_between(
        datetime(year_start, 1, 1, tzinfo=UTC), datetime(year_end, 1, 1, tzinfo=UTC)
    )


def days_between(start: datetime, end: datetime) -> list[Window]:
    """[start, end) as one window per UTC day (the first and last cut to it)."""
    day = start
    windows = []
    while day < end:
        following = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        windows.append((day, min(following, end)))
        day = following
    return windows


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Download a tile's Sentinel-2 L1C SAFE products of whole UTC years from CDSE, "
        "querying the STAC API one day at a time.",
        prog="python -m sentinel2_l1c.intake_cdse_s3_year",
    )
    parser.add_argument("--year-start", type=int, default=2024, help="First year.")
    parser.add_argument("--year-end", type=int, default=2025, help="End year, excluded.")
    add_common_arguments(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    options = options_for(args, day_windows(args.year_start, args.year_end))
    return report(run_intake(options, show_progress=not args.quiet))


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
