"""One command-line style: every command's --help and the first version's spellings."""

from __future__ import annotations

import argparse
import importlib
import re

import pytest

from sentinel2_l1c.run.cli import ALIAS_NOTE
from tests.helpers import COMMANDS

OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")


def parser_of(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(f"sentinel2_l1c.{module}").build_parser()


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"sentinel2_l1c.{module}").main
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert f"python -m sentinel2_l1c.{module}" in text
    for option in re.split(r"\n  (?=-)", text):
        assert option.count("(default") <= 1, option
        for hidden in ("None", "False", "==SUPPRESS==", "[]"):
            assert f"(default: {hidden})" not in option, option
    options = OPTION.findall(text.replace(ALIAS_NOTE, ""))
    assert options and not [o for o in options if "_" in o], "options are kebab-case"
    assert "--output" not in options or "Results folder" in text, "--output: a results folder"


# The first version's spellings (and this tool's earlier ones) and what they mean now.
OLD_SPELLINGS = [
    ("intake_cdse_s3", ["--tile_id", "35VLH", "--time_start", "2024-01-01T00:00:00Z",
                        "--time_end", "2024-01-02T00:00:00Z"],
     {"tile": "35VLH"}),
    ("intake_cdse_s3_year", ["--tile_id", "35VLH", "--year_start", "2023", "--year_end", "2024"],
     {"tile": "35VLH", "year_start": 2023, "year_end": 2024}),
    ("benchmark_patch_load", ["--num_repeats", "3", "--tile", "35VLH", "--x1", "1", "--y1", "2",
                              "--async_zipfs", "false", "--patch_size", "1800"],
     {"num_repeats": 3, "x1": 1.0, "async_zipfs": False, "patch_size": 1800}),
    ("benchmark_patch_load", ["--async_zipfs", "true", "--tile_id", "35VLH"],
     {"async_zipfs": True, "tile": "35VLH"}),
    ("stage", ["--from_network", "zarr", "--from_s3", "zipzarr", "--stream_unzip"],
     {"from_network": ["zarr"], "from_s3": ["zipzarr"], "stream_unzip": True}),
    ("publish_s3", ["--dry_run", "--log_level", "DEBUG"], {"dry_run": True, "log_level": "DEBUG"}),
    ("throughput", ["--job_days", "2", "--series_years", "3", "--tile_years", "4"],
     {"job_days": 2.0, "series_years": 3, "tile_years": 4}),
    ("demo", ["--interval_days", "30"], {"interval_days": 30}),
    ("lab.synthetic", ["--interval_days", "3", "--cloudy_share", "0.1"],
     {"interval_days": 3, "cloudy_share": 0.1}),
    ("convert_safe_to_zarr", ["--sharded"], {"format": "zarr_sharded"}),
]  # fmt: skip


@pytest.mark.parametrize("module,argv,expected", OLD_SPELLINGS)
def test_old_spellings_still_work(module: str, argv: list[str], expected: dict) -> None:
    args = vars(parser_of(module).parse_args(argv))
    assert {name: args[name] for name in expected} == expected
