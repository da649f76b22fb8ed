"""Shared fixtures: a small synthetic archive, the local CDSE and a lab, once per session.

Library code gets a ``Locations`` (``lab_locations``, ``LocalCdse.locations``); tests of a
command's ``main`` set the environment it reads (``helpers.use_settings``).

A test that needs the lab (its servers: SeaweedFS, the STAC API, the shaping proxy; or a lab
folder with every format made) is marked ``lab``: those using the fixtures below that make
one are marked here, tests that start servers of their own say so themselves.
``pytest -m "not lab"`` runs the rest.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import rioxarray  # noqa: F401 - registers .rio

from sentinel2_l1c import (
    convert_safe_to_cog,
    convert_safe_to_zarr,
    formats,
    zip_zarr,
)
from sentinel2_l1c.convert_safe_to_cog import CogOptions
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.demo import make_format
from sentinel2_l1c.formats import FORMATS
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment, lab_locations
from sentinel2_l1c.lab.object_store import Identity, write_aws_files
from sentinel2_l1c.lab.proxy import SilentEndpoint
from sentinel2_l1c.lab.synthetic import ProductWriter, generate
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from tests.helpers import (
    REQUIRE_TOOLS,
    SILENT_ATTEMPTS,
    SILENT_TIMEOUT,
    SMALL,
    SMALL_ARCHIVE,
    TILED,
    YEAR,
    Archive,
    Converted,
    made_once,
    storage,
    use_settings,
    variable,
)

#: Fixtures that start the lab's servers or make a whole lab: a test using one (directly or
#: through another fixture) is marked ``lab``.
LAB_FIXTURES = {"local_cdse", "silent", "network_lab"}


def pytest_itemcollected(item: pytest.Item) -> None:
    """``lab`` for a test that uses a lab fixture, directly or through another fixture."""
    if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    def make(root: Path) -> None:
        paths = list(generate(SMALL_ARCHIVE, root, show_progress=False))
        assert len(paths) == len(SMALL_ARCHIVE.acquisitions())

    root = made_once(tmp_path_factory, "eodata", make)
    acquisitions = SMALL_ARCHIVE.acquisitions()
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
            make_format(fmt, source, storages.NETWORK.path(locations, fmt), show_progress=False)
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


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's DSLAB_* variables or .env file, nor another test's."""
    for name in list(os.environ):
        if name.startswith("DSLAB_") and name != REQUIRE_TOOLS:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """SAFE roots of products without TLM markers (False: three) and with (True: two)."""
    roots = {}
    for tlm in (False, True):
        start, end = date(YEAR[tlm], 5, 1), date(YEAR[tlm], 6, 1)
        options = replace(TILED, tlm=tlm, count=2 if tlm else 3, start=start, end=end)
        make = lambda root, options=options: list(generate(options, root, show_progress=False))  # noqa: E731
        roots[tlm] = made_once(tmp_path_factory, f"tiled-tlm-{tlm}", make)
    return roots


@pytest.fixture()
def transfer_lab(
    network_lab: Path, local_cdse: LocalCdse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Network storage of the shared lab; this test's own buckets, temp and log folders."""
    own = {
        **{variable("temp", fmt): str(storage(tmp_path, "temp", fmt)) for fmt in FORMATS},
        **{
            variable("s3", fmt): f"t-{tmp_path.name[-20:].lower().replace('_', '-')}-{i}"
            for i, fmt in enumerate(FORMATS)
        },
        "DSLAB_LOG_FOLDER": str(tmp_path / "logs"),
    }
    use_settings(monkeypatch, lab_environment(network_lab), local_cdse.environment(), own)
    return tmp_path


@pytest.fixture()
def silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SilentEndpoint:
    """A hung endpoint that the lab's profiles (S3 storage and CDSE) point at."""
    with SilentEndpoint() as endpoint:
        identity = Identity("nobody", ("Read",))
        files = write_aws_files(
            tmp_path / "aws", endpoint.endpoint, {LAB_S3_PROFILE: identity, "cdse": identity}
        )
        use_settings(
            monkeypatch,
            files.environment(),
            {
                "DSLAB_NETWORK_TIMEOUT": str(SILENT_TIMEOUT),
                "DSLAB_NETWORK_ATTEMPTS": str(SILENT_ATTEMPTS),
            },
        )
        yield endpoint


@pytest.fixture(scope="session")
def converted(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """The archive as COG, Zarr, sharded Zarr (the ``SMALL`` layout) and zipped Zarr."""

    def make(out: Path) -> None:
        convert_safe_to_cog.convert(CogOptions(archive.root, out / "cog"), show_progress=False)
        convert_safe_to_zarr.convert(ZarrOptions(archive.root, out / "zarr", layout=SMALL), False)
        sharded = ZarrOptions(archive.root, out / "sharded", formats.ZARR_SHARDED, layout=SMALL)
        convert_safe_to_zarr.convert(sharded, False)
        zip_zarr.zip_store(out / "zarr", out / "zarr.zip", show_progress=False)

    out = made_once(tmp_path_factory, "converted", make)
    products = list_products(archive.root)
    return Converted(products, out / "cog", out / "zarr", out / "sharded", out / "zarr.zip")
