"""Ingest end to end on a local CDSE of two tiles: STAC search, CDSE's S3 behind a proxy that
records the connections open at once, the lab's S3 as the target; pixels against the
intake → convert → publish route, appends, a product missing from S3, the plan of what was
written, quotas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import zarr

from sentinel2_l1c import (
    convert_safe_to_zarr,
    formats,
    index_safe,
    ingest,
    intake_cdse_s3,
    plan,
    publish_s3,
)
from sentinel2_l1c.cube import layouts
from sentinel2_l1c.cube.icechunk_repo import read_store
from sentinel2_l1c.cube.protocol import COMPLETE
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.formats.safe import band_files
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment
from sentinel2_l1c.lab.object_store import write_aws_files
from sentinel2_l1c.lab.proxy import LabProxy
from sentinel2_l1c.lab.synthetic import SyntheticOptions, generate
from sentinel2_l1c.loaders.base import Catalogue
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.places import BucketPlace, FolderPlace, Place
from tests.helpers import made_once, one_error_line, use_settings

pytestmark = pytest.mark.lab

TILES = ("35VLH", "35VLG")
START, END = "2024-05-01T00:00:00Z", "2024-07-01T00:00:00Z"
DATES = 10  # per tile; 35VLH has one reprocessed duplicate besides


@pytest.fixture(scope="module")
def two_tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def make(root: Path) -> None:
        for tile, seed, duplicates in (("35VLH", 11, 1), ("35VLG", 12, 0)):
            options = SyntheticOptions(
                tile=tile, start=date(2024, 5, 1), end=date(2024, 7, 1), count=DATES, scale=30,
                seed=seed, duplicates=duplicates, cloudy_share=0.3,
            )  # fmt: skip
            list(generate(options, root, show_progress=False))

    return made_once(tmp_path_factory, "two-tiles", make)


@dataclass
class Lab:
    cdse: LocalCdse
    proxy: LabProxy  # in front of CDSE's S3 only
    environment: dict[str, str]


def place(bucket: str) -> BucketPlace:
    return storages.place_at(f"s3://{bucket}", Locations.from_environment())  # type: ignore[return-value]


@pytest.fixture(scope="module")
def lab(two_tiles: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("ingest-lab")
    with LocalCdse(folder, two_tiles) as cdse, LabProxy(cdse.store.s3_port, every=None) as proxy:
        files = write_aws_files(
            folder / "aws", cdse.store.endpoint,
            {LAB_S3_PROFILE: cdse.storage_user, "cdse": cdse.cdse_user},
            {"cdse": proxy.endpoint},
        )  # fmt: skip
        environment = {**lab_environment(folder), **cdse.settings(), **files.environment()}
        yield Lab(cdse, proxy, environment)


@pytest.fixture()
def settings(lab: Lab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Lab:
    use_settings(monkeypatch, lab.environment, {"DSLAB_LOG_FOLDER": str(tmp_path / "logs")})
    lab.proxy.peak_connections = 0
    return lab


def bucket_name(tmp_path: Path, what: str) -> str:
    return f"i-{tmp_path.name[-24:].lower().replace('_', '-')}-{what}"


def run(*argv: str, target: str, scratch: Path, end: str = END) -> int:
    return ingest.main([
        "--tiles", *TILES, "--time-start", START, "--time-end", end, "--target", target,
        "--source", str(scratch), "--quiet", *argv,
    ])  # fmt: skip


def contents(store: object, tiles: tuple[str, ...] = TILES) -> dict[str, np.ndarray]:
    """Every array of the tiles' groups, each group complete."""
    root = zarr.open_group(store, mode="r", zarr_format=3)
    found = {}
    for tile in tiles:
        for band_group in BAND_GROUPS:
            group = root[group_path(tile, 2024, band_group)]
            assert group.attrs[COMPLETE] is True
            for name in ("data", "time", "product_id", "band", "x", "y"):
                found[f"{tile}/{band_group.name}/{name}"] = group[name][:]
    return found


def store_of(where: Place, fmt: formats.Format) -> object:
    return read_store(where) if fmt.transactional else where.zarr_writer()


def assert_same(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert found.keys() == expected.keys()
    for name, values in expected.items():
        assert np.array_equal(found[name], values), name


@pytest.fixture(scope="module")
def route(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The arrays of the intake → convert → publish route: SAFE to the network drive, sharded
    Zarr there, published to a bucket and read back from it."""
    work = tmp_path_factory.mktemp("route")
    bucket = f"route-{work.name[-20:].lower().replace('_', '-')}"
    fmt = formats.ZARR_SHARDED
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_settings(monkeypatch, lab.environment, {
            "DSLAB_LOG_FOLDER": str(work / "logs"),
            storages.NETWORK.variables(fmt)[0]: str(work / "zarr"),
            storages.S3.variables(fmt)[0]: bucket,
        })  # fmt: skip
        for tile in TILES:
            argv = ["--tile", tile, "--time-start", START, "--time-end", END, "--quiet",
                    "--target", str(work / "safe")]  # fmt: skip
            assert intake_cdse_s3.main(argv) == 0
        argv = ["--format", fmt.name, "--source", str(work / "safe"), "--quiet"]
        assert convert_safe_to_zarr.main(argv) == 0
        assert publish_s3.main(["--formats", fmt.name, "--quiet"]) == 0
        return contents(place(bucket).zarr_writer())


@pytest.mark.parametrize("fmt", [formats.ZARR_SHARDED, formats.ICECHUNK], ids=lambda f: f.name)
def test_ingest_equals_the_intake_convert_publish_route(
    fmt: formats.Format, settings: Lab, route: dict[str, np.ndarray], tmp_path: Path
) -> None:
    bucket, scratch = bucket_name(tmp_path, "cube"), tmp_path / "scratch"
    assert (
        run("--format", fmt.name, "--connections", "4", target=f"s3://{bucket}", scratch=scratch)
        == 0
    )
    assert 2 <= settings.proxy.peak_connections <= 4, settings.proxy.peak_connections
    assert_same(contents(store_of(place(bucket), fmt)), route)
    assert not list(scratch.rglob("*.jp2")), "scratch copies deleted once committed"
    requests = settings.proxy.requests
    assert run("--format", fmt.name, target=f"s3://{bucket}", scratch=scratch) == 0
    assert settings.proxy.requests == requests, "a rerun with nothing new fetches nothing"

    # The closed year consolidated into the read layout: icechunk in place, Zarr elsewhere.
    into = bucket if fmt.transactional else bucket_name(tmp_path, "read")
    argv = ["--tiles", *TILES, "--format", fmt.name, "--target", f"s3://{bucket}",
            "--consolidate", "2024", "--consolidate-into", f"s3://{into}", "--quiet"]  # fmt: skip
    assert ingest.main(argv) == 0
    consolidated = store_of(place(into), fmt)
    assert_same(contents(consolidated), route)
    group = zarr.open_group(consolidated, mode="r", zarr_format=3)[
        group_path("35VLH", 2024, BAND_GROUPS[0])
    ]
    data = group["data"]
    assert group.attrs["dslab_layout"] == fmt.layout and (data.shards or data.chunks)[0] > 1
    assert settings.proxy.requests == requests, "from the stored pixels, not from CDSE"


def test_appends_new_dates_and_a_product_missing_from_s3_later(
    settings: Lab, route: dict[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first run up to mid-June while one 35VLG product is missing from S3: its tile-year
    takes the dates before it, holds the later ones back, exit 1; the second run, over the
    whole window with the product back, appends the rest: the same cube as one run."""
    bucket, scratch = bucket_name(tmp_path, "cube"), tmp_path / "scratch"
    folders = sorted(
        (p for p in list_products(settings.cdse.source_root, "35VLG")), key=lambda p: p.start_time
    )
    missing = folders[3]
    assert settings.cdse.remove_product(missing.name) > 0
    try:
        assert run(target=f"s3://{bucket}", scratch=scratch, end="2024-06-15T00:00:00Z") == 1
        out = capsys.readouterr()
        assert f"missing from S3: {missing.name.name}" in out.out
        assert "wait for" in out.err and "later products" in out.err
        root = zarr.open_group(place(bucket).zarr_writer(), mode="r", zarr_format=3)
        held = root[group_path("35VLG", 2024, BAND_GROUPS[0])]
        assert held["time"].shape[0] == 3, "the dates before the missing one"
        assert list(scratch.rglob("*.SAFE")), "downloaded later products wait in the scratch folder"
    finally:
        settings.cdse.publish([missing.path])
    assert run(target=f"s3://{bucket}", scratch=scratch) == 0
    out = capsys.readouterr().out
    assert "0 older than the target's last date" in out
    assert_same(contents(place(bucket).zarr_writer()), route)


def test_safe_virtual_indexes_cdse_in_place_and_reads_the_routes_pixels(
    settings: Lab, route: dict[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero copy: only metadata files fetched, band files indexed in byte ranges within the
    connection quota; a second run over a longer window indexes only the new products' files;
    the manifests read through the cdse storage give the route's pixels."""
    target = tmp_path / "manifests"
    argv = ["--format", "safe_virtual", "--connections", "4"]
    assert (
        run(*argv, target=str(target), scratch=tmp_path / "unused", end="2024-06-15T00:00:00Z") == 0
    )
    first = capsys.readouterr().out
    assert 1 <= settings.proxy.peak_connections <= 4, settings.proxy.peak_connections
    fetched = [p for p in (target / ingest.INDEXED_PRODUCTS).rglob("*") if p.is_file()]
    assert fetched and {p.name for p in fetched} <= {
        "MTD_MSIL1C.xml",
        "MTD_TL.xml",
        "manifest.safe",
    }
    assert not (tmp_path / "unused").exists()
    requests = settings.proxy.requests
    assert run(*argv, target=str(target), scratch=tmp_path / "unused") == 0
    second = capsys.readouterr().out
    assert " 0 kept" in first and " 0 kept" not in second, second
    assert settings.proxy.requests > requests
    requests = settings.proxy.requests
    assert run(*argv, target=str(target), scratch=tmp_path / "unused") == 0
    assert "0 manifests written" in capsys.readouterr().out
    assert settings.proxy.requests - requests <= 2 * 2, "a rerun only searches and lists"

    locations = Locations.from_environment()
    archive = storages.CDSE.place(locations, formats.SAFE)
    found = {}
    for tile in TILES:
        products = tuple(
            list_products(target / ingest.INDEXED_PRODUCTS, tile, 2024, band_files=False)
        )
        loader = formats.SAFE_VIRTUAL.readers[0].open(
            FolderPlace(target), Catalogue(tile, 2024, products), "ingest", archive
        )
        try:
            found |= contents(loader.store, (tile,))
        finally:
            loader.close()
    assert_same(found, route)

    # a band file that is not the one its product's manifest.safe lists is refused
    products = list_products(target / ingest.INDEXED_PRODUCTS, "35VLH", 2024, band_files=False)
    files = index_safe.BucketFiles(
        archive.client, archive.bucket, locations.cdse_account.retry, products
    )
    name = next(iter(files.listed.keys() & set(band_files(products[0], BAND_GROUPS[0]))))
    files.listed[name] = replace(files.listed[name], md5="0" * 32)
    with pytest.raises(InputDataError, match="not the file its manifest.safe lists .ETag"):
        files.index(name)


def test_plan_counts_what_ingest_wrote(
    settings: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = bucket_name(tmp_path, "cube")
    assert run(target=f"s3://{bucket}", scratch=tmp_path / "scratch") == 0
    client = place(bucket).client
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    store = place(bucket)
    measured = plan.measure(store)
    assert sum(c.bytes for c in measured.values()) == sum(o["Size"] for o in listed)
    assert sum(c.objects for c in measured.values()) == len(listed)
    layout = layouts.get(formats.ZARR_SHARDED.layout + layouts.APPEND)
    cube = plan.Cube(TILES, (2024,), formats.ZARR_SHARDED, layout, dates=DATES, side=366)
    arithmetic = cube.cost(plan.Rate(1.0, "any")).objects
    counted = {key: cost.objects for key, cost in measured.items()}
    assert counted == {
        ("35VLG", 2024): arithmetic + layouts.OBJECTS_PER_STORE,
        ("35VLH", 2024): arithmetic,
    }
    assert (
        ingest.main(["--tiles", *TILES, "--days", "1", "--target", f"s3://{bucket}", "--quiet"])
        == 0
    )  # nothing in the window
    assert plan.main([
        "--tiles", *TILES, "--years", "2024", "--formats", f"zarr_sharded:{layout.name}",
        "--dates", str(DATES), "--tile-side", "366", "--measured", f"s3://{bucket}",
        "--output", str(tmp_path / "plans"),
    ]) == 0  # fmt: skip
    record = json.loads(next((tmp_path / "plans").glob("plan_*.json")).read_text())["plans"][0]
    assert record["total_bytes"] == sum(o["Size"] for o in listed)
    assert record["objects"] == len(listed)
    assert record["buckets"]["35VLH"]["objects"] == arithmetic


def test_a_run_over_quota_is_refused_in_one_line(
    settings: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tiles", "finland", "--time-start", START, "--time-end", END, "--target",
            f"s3://{bucket_name(tmp_path, 'cube')}", "--quota-tib", "5"]  # fmt: skip
    line = one_error_line(ingest.main, argv, capsys)
    assert "over quota: tib: 11.3 TiB of 5: exceeds it by 6.3 (2.3× the quota)" in line, line
    assert "--over-quota" in line and settings.proxy.requests == settings.proxy.requests
