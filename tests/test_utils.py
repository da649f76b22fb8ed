"""utils: band groups, configuration from the environment and .env, atomic outputs, CLI."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from sentinel2_l1c import utils
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.lab.layout import lab_environment

REPO = Path(__file__).resolve().parents[1]


class TestBandGroups:
    def test_every_band_in_exactly_one_group(self) -> None:
        grouped = [band for group in utils.BAND_GROUPS for band in group.bands]
        assert sorted(grouped) == sorted(utils.BANDS)
        assert len(grouped) == 13

    def test_names_resolutions_and_chunks(self) -> None:
        assert utils.BAND_GROUP_NAMES == (
            "B02_B03_B04_B08",
            "B05_B06_B07_B8A_B11_B12",
            "B01_B09_B10",
        )
        shapes = {group.name: (group.resolution, group.chunks) for group in utils.BAND_GROUPS}
        assert shapes["B02_B03_B04_B08"] == (10, (20, 4, 512, 512))
        assert shapes["B05_B06_B07_B8A_B11_B12"] == (20, (40, 6, 256, 256))
        assert shapes["B01_B09_B10"] == (60, (80, 3, 128, 128))

    def test_lookups(self) -> None:
        assert utils.band_group("B01_B09_B10").resolution == 60
        assert utils.band_resolution("B8A") == 20
        with pytest.raises(ConfigError, match="unknown band group 'B99'"):
            utils.band_group("B99")
        with pytest.raises(ConfigError, match="unknown band 'B13'"):
            utils.band_resolution("B13")

    def test_band_chunk_must_hold_the_group(self) -> None:
        with pytest.raises(ValueError, match="band chunk"):
            utils.BandGroup(("B02", "B03"), 10, (20, 1, 512, 512), block=2048)


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


class TestConfiguration:
    def test_reads_dotenv_in_working_directory(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text("DSLAB_LOG_FOLDER=/data/logs\n")
        assert utils.log_folder() == Path("/data/logs")

    def test_environment_wins_over_dotenv(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / ".env").write_text("DSLAB_S2L1C_S3_PROFILE=from-file\n")
        monkeypatch.setenv("DSLAB_S2L1C_S3_PROFILE", "from-environment")
        assert utils.s3_profile() == "from-environment"

    def test_read_on_demand_not_at_import(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DSLAB_S2L1C_S3_PROFILE", "first")
        assert utils.s3_profile() == "first"
        monkeypatch.setenv("DSLAB_S2L1C_S3_PROFILE", "second")
        assert utils.s3_profile() == "second"

    def test_missing_variable_names_it_and_the_example(self) -> None:
        with pytest.raises(ConfigError) as caught:
            utils.storage_path("network", "safe")
        assert str(caught.value) == (
            "environment variable DSLAB_S2L1C_NETWORK_SAFE_PATH is not set: set it or add it "
            "to .env (see .env.example)"
        )

    def test_empty_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DSLAB_LOG_FOLDER", "  ")
        with pytest.raises(ConfigError, match="DSLAB_LOG_FOLDER is empty"):
            utils.log_folder()

    def test_malformed_integer(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DSLAB_TEST_WORKERS", "four")
        with pytest.raises(ConfigError, match="DSLAB_TEST_WORKERS must be an integer, got 'four'"):
            utils.env_int("DSLAB_TEST_WORKERS")
        monkeypatch.setenv("DSLAB_TEST_WORKERS", "0")
        with pytest.raises(ConfigError, match="must be at least 1, got 0"):
            utils.env_int("DSLAB_TEST_WORKERS", minimum=1)
        assert utils.env_int("DSLAB_TEST_UNSET", default=4) == 4

    def test_malformed_bucket(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DSLAB_S2L1C_S3_ZARR_BUCKET", "Sentinel2/Zarr")
        with pytest.raises(
            ConfigError, match="DSLAB_S2L1C_S3_ZARR_BUCKET is not a valid S3 bucket name"
        ):
            utils.s3_bucket("zarr")
        monkeypatch.setenv("DSLAB_S2L1C_S3_ZARR_BUCKET", "sentinel2_l1c_zarr")  # Allas style
        assert utils.s3_bucket("zarr") == "sentinel2_l1c_zarr"

    def test_dotenv_interpolation(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOCAL_SCRATCH", "/run/nvme/job_1")
        (tmp_path / ".env").write_text("DSLAB_S2L1C_TEMP_ZARR_PATH=${LOCAL_SCRATCH}/zarr\n")
        assert utils.storage_path("temp", "zarr") == Path("/run/nvme/job_1/zarr")

    def test_dotenv_reference_to_unset_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("LOCAL_SCRATCH", raising=False)
        (tmp_path / ".env").write_text("DSLAB_S2L1C_TEMP_ZARR_PATH=${LOCAL_SCRATCH}/zarr\n")
        with pytest.raises(
            ConfigError,
            match=r"DSLAB_S2L1C_TEMP_ZARR_PATH in .env refers to \$\{LOCAL_SCRATCH\}, which is not set",
        ):
            utils.storage_path("temp", "zarr")

    def test_location_variables(self) -> None:
        assert (
            utils.location_variable("network", "zarr_sharded")
            == "DSLAB_S2L1C_NETWORK_ZARR_SHARDED_PATH"
        )
        assert utils.location_variable("temp", "zipzarr") == "DSLAB_S2L1C_TEMP_ZIPZARR_PATH"
        assert utils.location_variable("s3", "cog") == "DSLAB_S2L1C_S3_COG_BUCKET"
        with pytest.raises(ConfigError, match="unknown storage 'nvme'"):
            utils.location_variable("nvme", "cog")
        with pytest.raises(ConfigError, match="unknown format 'netcdf'"):
            utils.location_variable("temp", "netcdf")

    def test_defaults_for_source(self) -> None:
        assert utils.stac_url() == "https://stac.dataspace.copernicus.eu/v1"
        assert utils.cdse_profile() == "cdse"


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
        for storage in ("network", "temp"):
            for fmt in utils.FORMATS:
                assert utils.storage_path(storage, fmt).parts[0] == "lab"
        assert all(utils.s3_bucket(fmt) for fmt in utils.FORMATS)
        assert utils.s3_profile() == "dslab-lab-storage"


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
        assert utils.parse_bool(text) is value

    def test_parse_bool_rejects(self) -> None:
        with pytest.raises(argparse.ArgumentTypeError, match="expected true or false, got 'maybe'"):
            utils.parse_bool("maybe")

    def test_expected_error_is_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        def fail(args: argparse.Namespace) -> int:
            raise InputDataError("x.SAFE/MTD_MSIL1C.xml: metadata file missing")

        parser = utils.new_parser("test", prog="dslab-test")
        assert utils.run_cli(parser, ["--quiet"], fail) == 1
        err = capsys.readouterr().err
        assert err == "dslab-test: error: x.SAFE/MTD_MSIL1C.xml: metadata file missing\n"

    def test_config_error_exit_code(self, capsys: pytest.CaptureFixture[str]) -> None:
        parser = utils.new_parser("test", prog="dslab-test")
        assert utils.run_cli(parser, [], lambda args: utils.s3_profile()) == 2
        assert "DSLAB_S2L1C_S3_PROFILE is not set" in capsys.readouterr().err


def test_blocks_align_with_chunks_and_esa_jp2_tiles() -> None:
    jp2_tile = {10: 1024, 20: 640, 60: 192}
    for group in utils.BAND_GROUPS:
        assert group.block % group.chunks[2] == 0
        assert group.block % jp2_tile[group.resolution] == 0
    with pytest.raises(ValueError, match="multiple of the chunks"):
        utils.BandGroup(("B02",), 10, (20, 1, 512, 512), block=1000)
