"""The shared command-line style: booleans, one-line errors, old spellings."""

from __future__ import annotations

import argparse

import pytest

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.run import cli
from sentinel2_l1c.storage.locations import Locations


class TestCommandLine:
    @pytest.mark.parametrize(
        "text,value", [("true", True), ("False", False), ("1", True), ("no", False)]
    )
    def test_parse_bool(self, text: str, value: bool) -> None:
        assert cli.parse_bool(text) is value

    def test_parse_bool_rejects(self) -> None:
        with pytest.raises(argparse.ArgumentTypeError, match="expected true or false, got 'maybe'"):
            cli.parse_bool("maybe")

    def test_expected_error_is_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        def fail(args: argparse.Namespace) -> int:
            raise InputDataError("x.SAFE/MTD_MSIL1C.xml: metadata file missing")

        parser = cli.new_parser("test", prog="dslab-test")
        assert cli.run_cli(parser, ["--quiet"], fail) == 1
        err = capsys.readouterr().err
        assert err == "dslab-test: error: x.SAFE/MTD_MSIL1C.xml: metadata file missing\n"

    def test_config_error_exit_code(self, capsys: pytest.CaptureFixture[str]) -> None:
        parser = cli.new_parser("test", prog="dslab-test")
        command = lambda args: Locations.from_environment().s3_account  # noqa: E731
        assert cli.run_cli(parser, [], command) == 2
        assert "DSLAB_S2L1C_S3_PROFILE is not set" in capsys.readouterr().err

    def test_old_spellings_and_switches(self) -> None:
        parser = cli.new_parser("test", prog="dslab-test")
        parser.add_argument("--num-repeats", type=int, default=10)
        parser.add_argument("--tile", default=None)
        parser.add_alias("--tile_id", "--tile")
        cli.add_switch(parser, "--async-zipfs", True, "Read through async_zipfs")
        parser.add_argument("command", nargs="*")
        args = parser.parse_args(
            ["--num_repeats=3", "--tile_id", "35VLH", "--log_level", "DEBUG", "--async_zipfs",
             "false", "--", "--num_repeats", "x"]
        )  # fmt: skip
        assert (args.num_repeats, args.tile, args.log_level, args.async_zipfs) == (
            3, "35VLH", "DEBUG", False,
        )  # fmt: skip
        assert args.command == ["--num_repeats", "x"], "a command after -- is left alone"
        assert parser.parse_args(["--async-zipfs"]).async_zipfs is True
        assert parser.parse_args([]).async_zipfs is True
        help_text = parser.format_help()
        assert help_text.count("(default: true)") == 1 and "snake_case" in help_text
