"""Helpers the tests share (fixtures are in ``conftest.py``): the small synthetic archive's
options, settings for a command's ``main``, optional tools, and what several test modules
compare or build."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import zarr
from obstore.store import LocalStore

from sentinel2_l1c import formats, index_safe
from sentinel2_l1c.cube.layouts import Tiling, ZarrLayout
from sentinel2_l1c.cube.protocol import COMPLETE
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.formats.safe import band_files
from sentinel2_l1c.jp2.virtual_store import Manifest, VirtualStore, manifest_name
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.lab.schedule import Acquisition
from sentinel2_l1c.lab.synthetic import ProductWriter, SyntheticOptions
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.s2.product import SafeProduct
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.retry import RetryPolicy

# --------------------------------------------------------------------------------------
# The small synthetic archive and the lab
# --------------------------------------------------------------------------------------


#: Every command, as ``python -m sentinel2_l1c.<command>`` runs it.
COMMANDS = [
    "intake_cdse_s3", "intake_cdse_s3_year", "convert_safe_to_cog", "convert_safe_to_zarr",
    "zip_zarr", "index_safe", "publish_s3", "stage", "benchmark_patch_load", "throughput",
    "report", "file_size_histogram", "layout_sweep", "ingest", "plan", "demo", "lab.synthetic",
    "lab.serve", "coverage_service",
]  # fmt: skip

#: A product name as ESA writes them.
EXAMPLE = "S2A_MSIL1C_20240221T095031_N0510_R079_T35VLH_20240221T103209.SAFE"

#: Set by .ci/run: a test that needs an optional tool fails instead of skipping without it.
REQUIRE_TOOLS = "DSLAB_TEST_REQUIRE_TOOLS"


#: Small chunks and blocks, so the small test tiles (366/183/61 px) span 2 × 2 blocks of 3 × 3
#: (60 m: 2 × 2) chunks, edge blocks and chunks smaller.
SMALL = ZarrLayout(
    "test_small", "tests' small tiles", (Tiling(4, 64, 192), Tiling(4, 32, 96), Tiling(4, 16, 32))
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


PATCH = 1800  # metres: fits the 3.66 km test tiles


def made_once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """A folder that ``make`` fills once per test run, for every xdist worker: the first to
    come makes it under a lock, the others wait and use it (so what uses it only reads it).
    A folder that a killed worker left half made is made again."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


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


def weed_sockets(command: list[str]) -> list[Path]:
    """The Unix sockets in /tmp of a ``weed server`` started with ``command``."""
    ports = [a.split("=", 1)[1] for a in command if a.split("=", 1)[0].endswith("port.grpc")]
    ports += [a.split("=", 1)[1] for a in command if a.startswith("-s3.port=")]
    return [p for port in ports for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]


# --------------------------------------------------------------------------------------
# Stores, compared
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Converted:
    products: list[SafeProduct]
    cog: Path
    zarr: Path
    sharded: Path
    zipped: Path


def data_array(store: object, band_group: BandGroup) -> zarr.Array:
    return zarr.open_array(
        store, path=f"{group_path('35VLH', 2024, band_group)}/data", mode="r", zarr_format=3
    )


def store_contents(
    store: object, band_groups: tuple[BandGroup, ...] = BAND_GROUPS
) -> dict[str, np.ndarray]:
    """Every array of the groups, for comparing stores made in different ways (a folder's
    path, or any Zarr store)."""
    root = zarr.open_group(
        str(store) if isinstance(store, Path) else store, mode="r", zarr_format=3
    )
    contents = {}
    for band_group in band_groups:
        group = root[group_path("35VLH", 2024, band_group)]
        assert group.attrs[COMPLETE] is True
        for name in ("data", "time", "product_id", "band", "x", "y"):
            contents[f"{band_group.name}/{name}"] = group[name][:]
    return contents


def link_products(root: Path, products: list[SafeProduct]) -> None:
    for product in products:
        link = root / product.name.cdse_path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(product.path)


# --------------------------------------------------------------------------------------
# Zip archives
# --------------------------------------------------------------------------------------


def hostile_archive(path: Path, kind: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("zarr.json", b"{}")
        if kind == "absolute name":
            archive.writestr(zipfile.ZipInfo("/tmp/evil.txt"), b"gotcha")
        elif kind == "file and folder":
            archive.writestr("a", b"file")
            archive.writestr("a/b", b"child")
        elif kind == "link with a child":
            link = zipfile.ZipInfo("link")
            link.external_attr = 0o120777 << 16  # a symbolic link to /etc
            archive.writestr(link, b"/etc")
            archive.writestr("link/passwd", b"gotcha")
        elif kind == "NUL in a name":
            archive.writestr("evil\x01name", b"x")  # \x01 becomes \x00 below
    if kind == "NUL in a name":
        path.write_bytes(path.read_bytes().replace(b"evil\x01name", b"evil\x00name"))
    return path


HOSTILE = {
    "absolute name": "would be written outside the target folder",
    "file and folder": "'a' is both a file and a folder",
    "link with a child": "'link' is both a file and a folder",
    "NUL in a name": "would be written outside the target folder or is not a file name",
}


# --------------------------------------------------------------------------------------
# The virtual Zarr
# --------------------------------------------------------------------------------------


#: 1830/915/305 px at 10/20/60 m: 2×2 JP2 tiles at each resolution, the last ones smaller.
TILED = SyntheticOptions(
    tile="35VLH", start=date(2024, 5, 1), end=date(2024, 6, 1), count=3, scale=6, seed=3,
    cloudy_share=0.0,
)  # fmt: skip


#: The year of the products without TLM markers (False) and with (True): one SAFE root can
#: hold both.
YEAR = {False: 2024, True: 2025}


def band_paths(root: Path) -> list[Path]:
    """The band files of every product (not the masks and previews, also JP2)."""
    products = list_products(root, None, None)
    return [root / name for p in products for g in BAND_GROUPS for name in band_files(p, g)]


def index_root(root: Path, target: Path, **options: object) -> index_safe.IndexSummary:
    return index_safe.index(index_safe.IndexOptions(root, target, **options), False)


def read_manifest(manifests: Path, year: int = YEAR[False]) -> Manifest:
    return Manifest.from_bytes((manifests / manifest_name("35VLH", year)).read_bytes())


def open_virtual(manifests: Path, root: Path, year: int = YEAR[False]) -> zarr.Group:
    manifest = read_manifest(manifests, year)
    return zarr.open_group(VirtualStore(manifest, LocalStore(root)), mode="r", zarr_format=3)


def reader_of(data: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, length: data[offset : offset + length]


# --------------------------------------------------------------------------------------
# Publish and stage
# --------------------------------------------------------------------------------------


def variable(storage_name: str, fmt: str) -> str:
    """The variable naming where ``fmt`` lives on a storage (its bucket on S3)."""
    return storages.get(storage_name).variables(formats.get(fmt))[0]


def tree(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {"": root.read_bytes()}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def last_results(folder: Path, prefix: str) -> dict:
    return json.loads(sorted(folder.glob(f"{prefix}_*.json"))[-1].read_text())


def bucket(fmt: str) -> str:
    return os.environ[variable("s3", fmt)]


# --------------------------------------------------------------------------------------
# Deadlines
# --------------------------------------------------------------------------------------


SILENT_TIMEOUT, SILENT_ATTEMPTS = 1, 2


SILENT_POLICY = RetryPolicy(
    attempts=SILENT_ATTEMPTS, connect_timeout=SILENT_TIMEOUT, read_timeout=SILENT_TIMEOUT
)


# Python start-up and imports of a command, on top of the policy's worst case
SLACK = 10.0
