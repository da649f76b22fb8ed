"""Configuration from the environment and .env, resolved once; .env.example documents it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sentinel2_l1c import (
    formats,
)
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab.layout import lab_environment
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations

REPO = Path(__file__).resolve().parents[2]


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
                if storage.cuts_patches:  # the lab sets its service's URL when it starts it
                    with pytest.raises(ConfigError, match=storage.variables(fmt)[0]):
                        storage.place(locations, fmt)
                    continue
                place = storage.place(locations, fmt)
                assert str(place).startswith(("lab/", "s3://sentinel2-l1c-", "s3://eodata/"))
        assert locations.s3_account.profile == "dslab-lab-storage"
