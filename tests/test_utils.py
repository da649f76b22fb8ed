"""utils, locations, cli: band groups, configuration from the environment and .env, atomic
outputs, the command-line style."""

from __future__ import annotations

import argparse
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel2_l1c import cli, formats, storages, utils
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.lab.layout import lab_environment
from sentinel2_l1c.locations import Locations

REPO = Path(__file__).resolve().parents[1]


class TestBandGroups:
    def test_every_band_in_exactly_one_group(self) -> None:
        grouped = [band for group in utils.BAND_GROUPS for band in group.bands]
        assert sorted(grouped) == sorted(utils.BANDS)
        assert len(grouped) == 13

    def test_names_and_resolutions(self) -> None:
        assert utils.BAND_GROUP_NAMES == (
            "B02_B03_B04_B08",
            "B05_B06_B07_B8A_B11_B12",
            "B01_B09_B10",
        )
        resolutions = [group.resolution for group in utils.BAND_GROUPS]
        assert resolutions == [10, 20, 60]

    def test_lookups(self) -> None:
        assert utils.band_group("B01_B09_B10").resolution == 60
        assert utils.band_resolution("B8A") == 20
        with pytest.raises(ConfigError, match="unknown band group 'B99'"):
            utils.band_group("B99")
        with pytest.raises(ConfigError, match="unknown band 'B13'"):
            utils.band_resolution("B13")

    def test_unknown_resolution(self) -> None:
        with pytest.raises(ValueError, match="unknown resolution"):
            utils.BandGroup(("B02", "B03"), 30)


class TestTileId:
    @pytest.mark.parametrize("text", ["35VLH", "t35vlh", " T35VLH ", "01CAA", "60XVV"])
    def test_valid(self, text: str) -> None:
        assert utils.parse_tile_id(text) == text.strip().upper().removeprefix("T")

    @pytest.mark.parametrize("text", ["35VL", "61VLH", "00VLH", "35ILH", "35VLW", "35V LH", ""])
    def test_invalid(self, text: str) -> None:
        with pytest.raises(
            ConfigError, match=r"invalid tile id .*expected an MGRS tile such as 35VLH"
        ):
            utils.parse_tile_id(text)


def network(fmt: str) -> Path:
    return storages.NETWORK.path(Locations.from_environment(), formats.get(fmt))


def temp(fmt: str) -> Path:
    return storages.TEMP.path(Locations.from_environment(), formats.get(fmt))


class TestConfiguration:
    def test_reads_dotenv_in_working_directory(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text("DSLAB_LOG_FOLDER=/data/logs\n")
        assert Locations.from_environment().results_folder() == Path("/data/logs")
        assert "DSLAB_LOG_FOLDER" not in os.environ, "DSLAB_* values of .env stay in Locations"

    def test_environment_wins_over_dotenv(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / ".env").write_text("DSLAB_S2L1C_S3_PROFILE=from-file\n")
        monkeypatch.setenv("DSLAB_S2L1C_S3_PROFILE", "from-environment")
        assert Locations.from_environment().s3_account.profile == "from-environment"

    def test_resolved_when_built_not_at_import(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DSLAB_S2L1C_S3_PROFILE", "first")
        first = Locations.from_environment()
        monkeypatch.setenv("DSLAB_S2L1C_S3_PROFILE", "second")
        assert first.s3_account.profile == "first"
        assert Locations.from_environment().s3_account.profile == "second"

    def test_flags_override(self) -> None:
        locations = Locations({"DSLAB_LOG_FOLDER": "/a"})
        assert locations.results_folder(Path("/b")) == Path("/b")
        assert locations.with_settings({"DSLAB_LOG_FOLDER": "/c"}).results_folder() == Path("/c")

    def test_missing_variable_names_it_and_the_example(self) -> None:
        with pytest.raises(ConfigError) as caught:
            network("safe")
        assert str(caught.value) == (
            "environment variable DSLAB_S2L1C_NETWORK_SAFE_PATH is not set: set it or add it "
            "to .env (see .env.example)"
        )

    def test_empty_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DSLAB_LOG_FOLDER", "  ")
        with pytest.raises(ConfigError, match="DSLAB_LOG_FOLDER is empty"):
            Locations.from_environment().results_folder()

    def test_malformed_integer(self) -> None:
        locations = Locations({"DSLAB_TEST_WORKERS": "four", "DSLAB_TEST_ZERO": "0"})
        with pytest.raises(ConfigError, match="DSLAB_TEST_WORKERS must be an integer, got 'four'"):
            locations.integer("DSLAB_TEST_WORKERS")
        with pytest.raises(ConfigError, match="must be at least 1, got 0"):
            locations.integer("DSLAB_TEST_ZERO", minimum=1)
        assert locations.integer("DSLAB_TEST_UNSET", default=4) == 4

    def test_malformed_bucket(self) -> None:
        zarr = formats.ZARR
        with pytest.raises(
            ConfigError, match="DSLAB_S2L1C_S3_ZARR_BUCKET is not a valid S3 bucket name"
        ):
            storages.S3.place(Locations({"DSLAB_S2L1C_S3_ZARR_BUCKET": "Sentinel2/Zarr"}), zarr)
        allas = Locations(
            {"DSLAB_S2L1C_S3_ZARR_BUCKET": "sentinel2_l1c_zarr", "DSLAB_S2L1C_S3_PROFILE": "p"}
        )
        assert storages.S3.place(allas, zarr).bucket == "sentinel2_l1c_zarr"  # Allas style

    def test_dotenv_interpolation(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOCAL_SCRATCH", "/run/nvme/job_1")
        (tmp_path / ".env").write_text("DSLAB_S2L1C_TEMP_ZARR_PATH=${LOCAL_SCRATCH}/zarr\n")
        assert temp("zarr") == Path("/run/nvme/job_1/zarr")

    def test_dotenv_reference_to_unset_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LOCAL_SCRATCH", raising=False)
        (tmp_path / ".env").write_text(
            "DSLAB_S2L1C_TEMP_ZARR_PATH=${LOCAL_SCRATCH}/zarr\nDSLAB_LOG_FOLDER=logs\n"
        )
        for _ in range(2):  # the same answer however often it is read
            locations = Locations.from_environment()
            assert locations.results_folder() == Path("logs")  # other settings still work
            with pytest.raises(
                ConfigError,
                match=r"DSLAB_S2L1C_TEMP_ZARR_PATH in .env refers to \$\{LOCAL_SCRATCH\}, which is not set",
            ):
                storages.TEMP.path(locations, formats.ZARR)

    def test_location_variables(self) -> None:
        assert storages.NETWORK.variables(formats.ZARR_SHARDED) == (
            "DSLAB_S2L1C_NETWORK_ZARR_SHARDED_PATH",
        )
        assert storages.TEMP.variables(formats.ZIPZARR) == ("DSLAB_S2L1C_TEMP_ZIPZARR_PATH",)
        assert storages.S3.variables(formats.COG) == ("DSLAB_S2L1C_S3_COG_BUCKET",)
        assert storages.S3.variables(formats.ZIPZARR) == (
            "DSLAB_S2L1C_S3_ZIPZARR_BUCKET",
            "DSLAB_S2L1C_S3_ZIPZARR_KEY",
        )
        with pytest.raises(ConfigError, match="unknown storage 'nvme'"):
            storages.get("nvme")
        with pytest.raises(ConfigError, match="unknown format 'netcdf'"):
            formats.get("netcdf")

    def test_defaults_for_source(self) -> None:
        locations = Locations()
        assert locations.stac_url == "https://stac.dataspace.copernicus.eu/v1"
        assert locations.cdse_account.profile == "cdse"
        assert locations.cdse_connections == 4


class TestEnvExample:
    """.env.example documents every variable the code reads, with the lab's values."""

    @staticmethod
    def example() -> dict[str, str]:
        pairs = re.findall(r"^(DSLAB_\w+)=(.*)$", (REPO / ".env.example").read_text(), re.MULTILINE)
        return dict(pairs)

    def test_lab_values(self) -> None:
        assert self.example() == lab_environment(Path("lab"))

    def test_every_variable_in_code_is_documented(self) -> None:
        text = (REPO / ".env.example").read_text()
        documented = set(re.findall(r"\b(DSLAB_\w+)=", text))
        in_code = set()
        for source in (REPO / "sentinel2_l1c").rglob("*.py"):
            in_code.update(re.findall(r'"(DSLAB_[A-Z0-9_]+)"', source.read_text()))
        in_code.update(lab_environment(Path("lab")))
        assert in_code <= documented

    def test_example_loads_without_errors(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text((REPO / ".env.example").read_text())
        locations = Locations.from_environment()
        for storage in storages.STORAGES.values():
            for fmt in filter(storage.holds, formats.FORMATS.values()):
                place = storage.place(locations, fmt)
                assert str(place).startswith(("lab/", "s3://sentinel2-l1c-", "s3://eodata/"))
        assert locations.s3_account.profile == "dslab-lab-storage"


class TestAtomicOutput:
    def test_file_lands_complete(self, tmp_path: Path) -> None:
        target = tmp_path / "sub" / "result.json"
        utils.atomic_write_text(target, "{}")
        assert target.read_text() == "{}"
        assert os.listdir(target.parent) == ["result.json"]

    def test_failure_leaves_nothing(self, tmp_path: Path) -> None:
        target = tmp_path / "product.SAFE"
        with pytest.raises(RuntimeError):
            with utils.atomic_output(target) as temp:
                temp.mkdir()
                (temp / "half.jp2").write_bytes(b"x")
                raise RuntimeError("crash")
        assert list(tmp_path.iterdir()) == []

    def test_replaces_existing_file(self, tmp_path: Path) -> None:
        target = tmp_path / "a.txt"
        target.write_text("old")
        utils.atomic_write_text(target, "new")
        assert target.read_text() == "new"

    def test_temp_name_never_looks_finished(self, tmp_path: Path) -> None:
        temp = utils.temp_sibling(tmp_path / "x.SAFE")
        assert temp.parent == tmp_path and temp.name.startswith(".x.SAFE.tmp-")
        assert not temp.name.endswith(".SAFE")


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


def test_runs_started_in_the_same_second_keep_their_own_results(tmp_path: Path) -> None:
    """Issue 16, item 5: the second run of a second used to overwrite the first's file."""
    started = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)
    paths = [utils.new_result_file(tmp_path, "stage", started, f"run {n}") for n in range(3)]
    assert [p.name for p in paths] == [
        "stage_2026-11-22_01-02-03.json",
        "stage_2026-11-22_01-02-03_2.json",
        "stage_2026-11-22_01-02-03_3.json",
    ]
    assert [p.read_text() for p in paths] == ["run 0", "run 1", "run 2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
