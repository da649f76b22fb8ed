"""The registries: every format and storage through the whole workflow, from the registry alone.

A format added to ``formats.FORMATS`` (here one made up for the test) is converted, published,
staged, benchmarked and reported with no change anywhere else; and no module outside
``formats/`` branches on a format's or storage's name.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel2_l1c import formats, ingest, publish_s3, report, stage, throughput
from sentinel2_l1c.bench.config import BenchmarkConfig
from sentinel2_l1c.bench.run import run_benchmark
from sentinel2_l1c.coverage_service import ServiceProcess
from sentinel2_l1c.demo import make_format
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.formats.zarr import ZarrFormat, ZarrReader
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.loaders.base import Catalogue
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.records.benchmark import read_benchmark
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.places import BucketPlace
from sentinel2_l1c.storage.s3_account import S3Account
from tests.helpers import Archive, storage

PACKAGE = Path(__file__).resolve().parents[2] / "sentinel2_l1c"
PATCH = 1800  # metres: fits the 3.66 km test tiles

#: A format no module knows: Zarr with another name, made by the Zarr converter.
ZARR_COPY = ZarrFormat(
    name="zarr_copy",
    label="Zarr copy",
    packaging=formats.Packaging.TREE,
    maker="convert_safe_to_zarr",
    made_from="safe",
    chunk_objects=True,
    readers=(ZarrReader(),),
)


@pytest.fixture()
def registered() -> Iterator[list[str]]:
    """The registry with ZARR_COPY added, as one line in ``FORMATS`` would."""
    saved = dict(formats.FORMATS)
    formats.FORMATS[ZARR_COPY.name] = ZARR_COPY
    yield list(formats.FORMATS)
    formats.FORMATS.clear()
    formats.FORMATS.update(saved)


def test_every_format_and_storage_through_the_workflow(
    registered: list[str], archive: Archive, local_cdse: LocalCdse, tmp_path: Path
) -> None:
    lab = tmp_path / "lab"
    locations = local_cdse.locations(lab_locations(lab))
    suffix = tmp_path.name[-12:].lower().replace("_", "-")
    buckets = {
        storages.S3.variables(fmt)[0]: f"r-{suffix}-{number}"
        for number, fmt in enumerate(formats.FORMATS.values())
    }
    locations = locations.with_settings(buckets)
    network = storages.NETWORK
    shutil.copytree(archive.root, network.path(locations, formats.SAFE))
    for fmt in formats.FORMATS.values():  # convert, each from the format it is made from
        if fmt.made_from is not None:
            source = network.path(locations, formats.get(fmt.made_from))
            assert make_format(fmt, source, network.path(locations, fmt), show_progress=False)
    year = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    ingest.index_in_place(ingest.in_place_options(locations, ("35VLH",), year), False)  # cdse's
    logs = lab / "logs"
    published = publish_s3.publish(
        publish_s3.PublishOptions(tuple(registered)), locations, logs, show_progress=False
    )
    assert published is not None
    assert [a.format for a in ActionLog.read(published).actions] == registered
    copies = tuple(
        (source.name, fmt) for source in storages.staging_sources() for fmt in registered
    )
    staged = stage.stage(
        stage.StageOptions(copies, unzip=True, stream_unzip=True), locations, logs, False
    )
    actions = ActionLog.read(staged).actions
    assert len(actions) == len(copies) + 2 * len(formats.archive_formats())
    products = list_products(network.path(locations, formats.SAFE), "35VLH", 2024)
    left, bottom, right, top = products[0].grid(10).bounds
    keys = tuple(formats.reader_keys())
    assert "zarr_copy" in keys and "zipzarr@zipstore" in keys
    config = BenchmarkConfig(
        tuple(storages.STORAGES), keys, 2, "35VLH", 2024, (left, top, right, bottom),
        patch_size=PATCH,
    )  # fmt: skip
    served = network.path(locations, formats.ZARR_SHARDED)
    with ServiceProcess(served) as service:  # the coverage service over the network copy
        url = {storages.SERVICE.variables(formats.ZARR_SHARDED)[0]: service.endpoint}
        target, results = run_benchmark(config, locations.with_settings(url), logs, quiet=True)
    assert results.mismatches() == []
    assert "zarr_sharded@edr" in results.results["service"]
    assert "safe@odc-stac" in results.results["cdse"], "odc-stac over CDSE's Items, in CDSE"
    for record in results.repeats:
        assert set(record.checksums) == {pair.name for pair in config.pairs()}
    held = {(s, fmt.name) for s in storages.STORAGES for fmt in formats.FORMATS.values()
            if storages.get(s).holds(fmt)}  # fmt: skip
    assert ("cdse", "safe") in held and ("cdse", "safe_virtual") in held
    assert ("service", "zarr_sharded") in held and len(held) == 3 * 8 + 3
    assert set(results.ideal) == set(storages.STORAGES) - {"cdse", "service"}
    estimates = throughput.estimate(
        throughput.loads_from_results(read_benchmark(target)),
        throughput.staging_from_stage(ActionLog.read(staged)),
        throughput.Assumptions(),
    )
    routes = {estimate.route.label for estimate in estimates}
    assert {"S3 Zarr copy", "network Zarr copy → temp Zarr copy"} <= routes
    assert "S3 zipped Zarr (ZipStore)" in routes
    report.chart(results, tmp_path / "chart.png")


def test_unknown_keys_in_old_results_get_generic_labels(tmp_path: Path) -> None:
    """Results of a storage or format this version does not know are shown, not a KeyError."""
    path = tmp_path / "old.json"
    path.write_text(
        '{"tile": "35VLH", "year": 2024, "results": {"lustre": {"netcdf": {"durations": [1.0, '
        '2.0]}}, "s3": {"zarr": {"durations": [3.0, 3.0]}}}}'
    )
    results = read_benchmark(path)
    assert results.means() == {"lustre/netcdf": 1.5, "s3/zarr": 3.0}
    labels = {
        e.route.label for e in throughput.estimate(results.means(), {}, throughput.Assumptions())
    }
    assert labels == {"lustre netcdf", "S3 Zarr"}
    report.chart(results, tmp_path / "chart.png")
    assert report.colour("lustre") == report.OTHER_COLOUR


def test_readers_and_labels() -> None:
    assert formats.label("zipzarr") == "zipped Zarr"
    assert formats.label("zipzarr@zipstore") == "zipped Zarr (ZipStore)"
    assert formats.label("zipzarr@tensorstore") == "zipped Zarr"  # the default, by its name
    assert formats.label("zipzarr@async_zipfs") == "zipped Zarr (async_zipfs)"
    assert formats.label("netcdf@x") == "netcdf@x"
    assert storages.label("s3") == "S3" and storages.label("lustre") == "lustre"
    assert formats.variant("zipzarr@tensorstore").reader is formats.ZIPZARR.readers[0]


def test_a_reader_refuses_a_place_it_cannot_read(tmp_path: Path) -> None:
    """Refused by name in one line, never replaced by another reader without a word."""
    catalogue = Catalogue("35VLH", 2024, ())
    account = S3Account("any", tmp_path / "config", tmp_path / "credentials")
    archive, tree = BucketPlace(account, "bucket", "store.zip"), BucketPlace(account, "bucket")
    for key, place in (("zarr@obstore", archive), ("zarr@tensorstore", archive),
                       ("zipzarr@tensorstore", tree), ("zarr_sharded@edr", tree)):  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            formats.variant(key).reader.open(place, catalogue, "publish_s3")
        message = str(refused.value)
        assert "\n" not in message and str(place) in message, message
        assert message.split()[0] == key.partition("@")[2], message


def test_places_resolve_from_the_registry(tmp_path: Path) -> None:
    service = "http://127.0.0.1:9000"  # the lab sets its service's URL when it starts it
    variable = storages.SERVICE.variables(formats.ZARR_SHARDED)[0]
    locations = lab_locations(tmp_path).with_settings({variable: f"{service}/"})
    for storage_entry in storages.STORAGES.values():
        for fmt in formats.FORMATS.values():
            if not storage_entry.holds(fmt):
                with pytest.raises(ConfigError, match=f"{fmt.name} is not on"):
                    storage_entry.place(locations, fmt)
                continue
            place = storage_entry.place(locations, fmt)
            assert (
                fmt.name.replace("_", "-") in str(place)
                or fmt.name in str(place)
                or str(place) in ("s3://eodata/", service)  # cdse's own bucket, the service
            )
    manifests = storages.CDSE.place(locations, formats.SAFE_VIRTUAL).local_path()
    network = storages.NETWORK.place(locations, formats.SAFE_VIRTUAL).local_path()
    assert manifests is not None and network is not None
    assert manifests.parent == network.parent and manifests != network  # their own versions
    assert storages.CDSE.place(locations, formats.SAFE).quota == 4
    assert storage(tmp_path, "temp", "zipzarr").name == "sentinel2_l1c_zipzarr.zip"
    s3_zip = storages.S3.place(locations, formats.ZIPZARR)
    assert (s3_zip.bucket, s3_zip.key) == ("sentinel2-l1c-zipzarr", "sentinel2_l1c_zipzarr.zip")


NAMES = "|".join([*formats.FORMATS, *storages.STORAGES])
BRANCH = re.compile(rf"""(==|!=|\bin)\s*[(\[{{]?\s*["']({NAMES})["']|["']({NAMES})["']\s*(==|!=)""")


LITERAL_TEST = re.compile(r"""\b(fmt|storage)(\.name)?\s*(==|!=|not in|in)\s*[(\[{]?\s*["']""")


def test_no_branch_on_a_format_or_storage_name_outside_the_registries() -> None:
    """Formats and storages are told apart by their registry entries, not by comparing names."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "formats" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if BRANCH.search(line) or LITERAL_TEST.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert found == []


def test_a_storage_registered_at_runtime_is_staged_from_and_benchmarked(
    network_lab: Path, tmp_path: Path
) -> None:
    """A second shared drive: one registry entry and its variables, nothing else."""
    lustre = storages.FolderStorage("lustre", "Lustre", "#aa44aa", "a second shared drive")
    saved = dict(storages.STORAGES)
    storages.STORAGES[lustre.name] = lustre
    try:
        locations = lab_locations(network_lab)
        same_files = {  # the new storage's variables point at the network copies
            lustre.variables(fmt)[0]: str(storages.NETWORK.path(locations, fmt))
            for fmt in formats.FORMATS.values()
        }
        temp = {  # this test's own temp storage
            storages.TEMP.variables(fmt)[0]: str(tmp_path / "temp" / fmt.file_name)
            for fmt in formats.FORMATS.values()
        }
        locations = locations.with_settings({**same_files, **temp})
        assert "--from-lustre" in stage.build_parser().format_help()
        options = stage.StageOptions((("lustre", "zarr"), ("lustre", "cog")))
        staged = stage.stage(options, locations, tmp_path / "logs", show_progress=False)
        assert [a.key for a in ActionLog.read(staged).actions] == [
            "copy:lustre:zarr",
            "copy:lustre:cog",
        ]
        products = list_products(storages.NETWORK.path(locations, formats.SAFE), "35VLH", 2024)
        left, bottom, right, top = products[0].grid(10).bounds
        config = BenchmarkConfig(
            ("network", "lustre", "temp"), ("zarr", "cog"), 2, "35VLH", 2024,
            (left, top, right, bottom), patch_size=PATCH,
        )  # fmt: skip
        target, results = run_benchmark(config, locations, tmp_path / "logs", quiet=True)
        assert results.mismatches() == [] and set(results.results) == {"network", "lustre", "temp"}
        estimates = throughput.estimate(
            results.means(),
            throughput.staging_from_stage(ActionLog.read(staged)),
            throughput.Assumptions(),
        )
        assert {"Lustre Zarr", "Lustre Zarr → temp Zarr"} <= {e.route.label for e in estimates}
        assert report.colour("lustre") == "#aa44aa"
    finally:
        storages.STORAGES.clear()
        storages.STORAGES.update(saved)
