"""The coverage service route: a real xpublish + OGC API - EDR server over the lab's sharded
Zarr, started and stopped with the lab, asked for patches through a shaping proxy; its pixels
are those every other reader loads, and what each load cost the server is recorded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

from sentinel2_l1c import formats
from sentinel2_l1c.bench.config import BenchmarkConfig
from sentinel2_l1c.bench.run import run_benchmark, table
from sentinel2_l1c.coverage_service import ServiceProcess, dataset_id, group_of, netcdf_attributes
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.lab.network import parse
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages

PATCH = 1800  # metres: fits the 3.66 km test tiles
KEYS = ("zarr_sharded", "zarr_sharded@edr")


def test_dataset_ids_name_the_group_they_serve() -> None:
    identifier = dataset_id("35VLH", 2024, "B02_B03_B04_B08")
    assert group_of(identifier) == "35VLH/2024/B02_B03_B04_B08"
    assert group_of("35VLH-latest-B02") is None and group_of("zarr.json") is None
    assert netcdf_attributes({"a": "x", "b": 1, "proj": {"code": 1}, "c": [1]}) == {
        "a": "x",
        "b": 1,
    }


def _lab_with_network_copies(network_lab: Path, lab: Path) -> Path:
    """A lab of its own whose network drive holds the SAFE and sharded Zarr copies."""
    source = lab_locations(network_lab)
    target = lab_locations(lab)
    for fmt in (formats.SAFE, formats.ZARR_SHARDED):
        shutil.copytree(storages.NETWORK.path(source, fmt), storages.NETWORK.path(target, fmt))
    (lab / "eodata").mkdir()
    return lab


@pytest.mark.lab
def test_the_service_serves_the_pixels_every_reader_loads_and_stops_with_the_lab(
    network_lab: Path, tmp_path: Path
) -> None:
    lab = _lab_with_network_copies(network_lab, tmp_path / "lab")
    shaped = parse("latency_ms=5")  # the service is reached through the storage's profile
    with LocalCdse(lab, lab / "eodata", network=shaped, service=True) as cdse:
        assert cdse.service is not None and cdse.service.process is not None
        process = cdse.service.process.pid
        locations = cdse.locations(lab_locations(lab))
        url = storages.SERVICE.place(locations, formats.ZARR_SHARDED).url
        assert url != cdse.service.endpoint  # through the shaping proxy
        served = requests.get(f"{url}/datasets", timeout=10).json()
        assert dataset_id("35VLH", 2024, "B02_B03_B04_B08") in served
        products = list_products(storages.NETWORK.path(locations, formats.SAFE), "35VLH", 2024)
        left, bottom, right, top = products[0].grid(10).bounds
        config = BenchmarkConfig(
            ("network", "service"), KEYS, 3, "35VLH", 2024, (left, top, right, bottom),
            patch_size=PATCH,
        )  # fmt: skip
        assert [pair.name for pair in config.pairs()] == [
            "network/zarr_sharded", "service/zarr_sharded@edr"
        ]  # fmt: skip
        _, results = run_benchmark(config, locations, tmp_path / "logs", quiet=True)
        assert results.mismatches() == []
        for record in results.repeats:
            assert len(set(record.checksums.values())) == 1 and len(record.checksums) == 2
        measured = results.results["service"]["zarr_sharded@edr"]
        pixels = sum(record.bytes["service/zarr_sharded@edr"] for record in results.repeats)
        assert len(measured.served["link_bytes"]) == 3
        assert sum(measured.served["link_bytes"]) > pixels  # the pixels and NetCDF's own bytes
        assert len(measured.served["server_cpu_seconds"]) == 3
        assert all(seconds > 0 for seconds in measured.served["server_cpu_seconds"])
        assert any("of the server's CPU" in line for line in table(results))

        other_year = BenchmarkConfig(
            ("service",), ("zarr_sharded@edr",), 2, "35VLH", 2024, (left, top, right, bottom),
            patch_size=PATCH,
        )  # fmt: skip
        shutil.rmtree(storages.NETWORK.path(locations, formats.ZARR_SHARDED) / "35VLH" / "2024")
        with pytest.raises(InputDataError) as missing:
            run_benchmark(other_year, locations, tmp_path / "logs", quiet=True)
        message = str(missing.value)
        assert "\n" not in message and "not served (HTTP 404)" in message, message
        assert "coverage_service" in message, message
    with pytest.raises(ProcessLookupError):
        os.kill(process, 0)  # stopped with the lab
    with pytest.raises(requests.ConnectionError):
        requests.get(cdse.service.endpoint or url, timeout=5)


def test_a_service_that_cannot_start_says_why_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        with ServiceProcess(tmp_path / "no" / "such" / "store"):
            pass
    message = str(refused.value)
    assert message.startswith("the coverage service did not start:") and "\n" not in message
    assert "no such folder" in message


def test_other_systems_readers_are_refused_on_formats_they_cannot_read() -> None:
    for key in ("zarr@odc-stac", "cog@edr", "zarr_sharded@stackstac"):
        with pytest.raises(ConfigError) as refused:
            formats.variant(key)
        assert "\n" not in str(refused.value) and key in str(refused.value)
    assert not storages.SERVICE.holds(formats.COG) and storages.SERVICE.holds(formats.ZARR_SHARDED)
