"""Shared fixtures: a small synthetic archive written once per test session."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from sentinel2_l1c import convert_safe_to_cog, convert_safe_to_zarr, utils, zip_zarr
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_environment
from sentinel2_l1c.lab.schedule import Acquisition
from sentinel2_l1c.lab.synthetic import ProductWriter, SyntheticOptions, generate
from sentinel2_l1c.utils import FORMATS, location_variable


@dataclass(frozen=True)
class Archive:
    """Synthetic products on disk with the options and acquisitions that made them."""

    root: Path
    options: SyntheticOptions
    acquisitions: list[Acquisition]
    writer: ProductWriter

    def path_of(self, acquisition: Acquisition) -> Path:
        return self.root / acquisition.safe_name.cdse_path


# Scale 30: 366/183/61 px at 10/20/60 m, so a product takes a fraction of a second.
SMALL_ARCHIVE = SyntheticOptions(
    tile="35VLH",
    start=date(2024, 5, 1),
    end=date(2024, 7, 1),
    interval_days=4,
    scale=30,
    seed=7,
    duplicates=3,
    cloudy_share=0.5,
)


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    root = tmp_path_factory.mktemp("eodata")
    paths = list(generate(SMALL_ARCHIVE, root, show_progress=False))
    acquisitions = SMALL_ARCHIVE.acquisitions()
    assert len(paths) == len(acquisitions)
    return Archive(root, SMALL_ARCHIVE, acquisitions, ProductWriter(SMALL_ARCHIVE))


@pytest.fixture(scope="session")
def local_cdse(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> LocalCdse:
    """SeaweedFS holding the archive as bucket ``eodata`` and a STAC API over it, for the session."""
    with LocalCdse(tmp_path_factory.mktemp("cdse"), archive.root) as cdse:
        yield cdse


@pytest.fixture(scope="session")
def network_lab(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab folder whose network storage holds the archive in every format."""
    lab = tmp_path_factory.mktemp("lab")
    network = {fmt: storage(lab, "network", fmt) for fmt in FORMATS}
    shutil.copytree(archive.root, network["safe"])
    convert_safe_to_cog.convert(
        convert_safe_to_cog.CogOptions(network["safe"], network["cog"]), False
    )
    for fmt in ("zarr", "zarr_sharded"):
        options = convert_safe_to_zarr.ZarrOptions(
            network["safe"], network[fmt], sharded=fmt == "zarr_sharded"
        )
        convert_safe_to_zarr.convert(options, False)
    zip_zarr.zip_store(network["zarr"], network["zipzarr"], show_progress=False)
    return lab


def storage(lab: Path, storage: str, fmt: str) -> Path:
    """Where the lab settings put ``fmt`` on the ``network`` or ``temp`` storage."""
    return Path(lab_environment(lab)[location_variable(storage, fmt)])


@contextlib.contextmanager
def lab_settings(lab: Path, *extra: dict[str, str]) -> Iterator[None]:
    """The lab's DSLAB_* settings (and ``extra`` ones) for fixtures wider than a test."""
    with pytest.MonkeyPatch.context() as patch:
        for settings in (lab_environment(lab), *extra):
            for name, value in settings.items():
                patch.setenv(name, value)
        yield


@pytest.fixture()
def cdse_environment(local_cdse: LocalCdse, monkeypatch: pytest.MonkeyPatch) -> LocalCdse:
    """Point this test's configuration at the local CDSE."""
    for name, value in local_cdse.environment().items():
        monkeypatch.setenv(name, value)
    return local_cdse


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's DSLAB_* variables or .env file, nor another test's."""
    for name in list(os.environ):
        if name.startswith("DSLAB_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(utils, "_loaded_env_files", set())
    monkeypatch.setattr(utils, "_unresolved_refs", {})
    monkeypatch.chdir(tmp_path)
