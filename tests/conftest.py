"""Shared fixtures: a small synthetic archive, the local CDSE and a lab, once per session.

Library code gets a ``Locations`` (``lab_locations``, ``LocalCdse.locations``); tests of a
command's ``main`` set the environment it reads (``use_settings``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from sentinel2_l1c import formats, storages
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.lab.schedule import Acquisition
from sentinel2_l1c.lab.synthetic import ProductWriter, SyntheticOptions, generate
from sentinel2_l1c.zarr_layouts import Tiling, ZarrLayout

#: Set by .ci/run: a test that needs an optional tool fails instead of skipping without it.
REQUIRE_TOOLS = "DSLAB_TEST_REQUIRE_TOOLS"


#: Small chunks and blocks, so the small test tiles (366/183/61 px) span several blocks.
SMALL = ZarrLayout(
    "test_small", "tests' small tiles", (Tiling(4, 64, 128), Tiling(4, 32, 64), Tiling(4, 16, 32))
)


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
    """A lab folder whose network storage holds the archive in every registered format, each
    made by the registry's own conversion from the one it is made from."""
    lab = tmp_path_factory.mktemp("lab")
    locations = lab_locations(lab)
    shutil.copytree(archive.root, storage(lab, "network", "safe"))
    for fmt in formats.FORMATS.values():
        if fmt.made_from is not None:
            source = storages.NETWORK.path(locations, formats.get(fmt.made_from))
            fmt.convert(source, storages.NETWORK.path(locations, fmt), show_progress=False)
    return lab


@pytest.fixture(autouse=True)
def drop_new_buckets(request: pytest.FixtureRequest) -> None:
    """Delete the buckets a test made: SeaweedFS gives every bucket 7 volumes of the server's
    limited number, and no later test reads another test's buckets."""
    if "local_cdse" not in request.fixturenames:
        yield
        return
    client = request.getfixturevalue("local_cdse").admin_client()
    before = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    yield
    for bucket in {b["Name"] for b in client.list_buckets().get("Buckets", [])} - before:
        client.delete_bucket(Bucket=bucket)  # SeaweedFS drops a bucket with its objects


@pytest.fixture()
def cdse_environment(local_cdse: LocalCdse, monkeypatch: pytest.MonkeyPatch) -> LocalCdse:
    """Point the commands run by this test (their ``main``) at the local CDSE."""
    use_settings(monkeypatch, local_cdse.environment())
    return local_cdse


def storage(lab: Path, storage_name: str, format_name: str) -> Path:
    """Where the lab's settings put a format on a folder storage (network, temp)."""
    folder = storages.STORAGES[storage_name]
    assert isinstance(folder, storages.FolderStorage)
    return folder.path(lab_locations(lab), formats.get(format_name))


def use_settings(monkeypatch: pytest.MonkeyPatch, *settings: dict[str, str]) -> None:
    """Set environment variables for a command's ``main`` (restored after the test)."""
    for group in settings:
        for name, value in group.items():
            monkeypatch.setenv(name, value)


def one_error_line(
    main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    """Run a command's ``main`` quietly; it must fail with exactly one error line and no
    traceback (retries may log warnings). Returns that line."""
    code = main([*argv, "--quiet"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert code != 0, err
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def tool(name: str, package: str) -> str:
    """The path of an optional command-line tool; skips the test without it (fails in CI)."""
    beside = Path(sys.executable).parent / name  # installed into the venv (s3cmd from PyPI)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found:
        return found
    reason = f"{name} not found: install the Debian package {package}"
    if os.environ.get(REQUIRE_TOOLS):
        pytest.fail(f"{reason} ({REQUIRE_TOOLS} is set)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's DSLAB_* variables or .env file, nor another test's."""
    for name in list(os.environ):
        if name.startswith("DSLAB_") and name != REQUIRE_TOOLS:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
