"""benchmark_patch_load on a small lab: schema, equal pixels everywhere, seeds, statistics."""

from __future__ import annotations

import json
import math
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from sentinel2_l1c import benchmark_patch_load as bench
from sentinel2_l1c import (
    demo,
    formats,
    publish_s3,
    report,
    stage,
    throughput,
)
from sentinel2_l1c.bench import loader_mode
from sentinel2_l1c.bench import run as benchmark
from sentinel2_l1c.bench.config import BenchmarkConfig, Pair, loader_patches
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment, lab_locations
from sentinel2_l1c.lab.object_store import write_aws_files
from sentinel2_l1c.lab.proxy import LabProxy, ProxyProcess
from sentinel2_l1c.loaders import base, gdal_files, zarr_arrays
from sentinel2_l1c.records.benchmark import BenchmarkResults, LoaderMeasurement, read_benchmark
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.product import read_band
from sentinel2_l1c.storage.clients import s3_gdal_options
from sentinel2_l1c.storage.locations import S3_PROFILE, Locations
from tests.helpers import PATCH, use_settings

FORMATS = list(formats.FORMATS)
#: every results key read from stored files (a coverage service's: tests/test_coverage_service)
FILE_READER_KEYS = [k for k in formats.reader_keys() if not formats.variant(k).reader.asks_service]


@pytest.fixture(scope="module")
def lab(network_lab: Path) -> Path:
    """The shared lab: every format on the network drive, staged to temp by the stage module."""
    options = stage.StageOptions(copies=tuple(("network", fmt) for fmt in FORMATS))
    stage.stage(options, lab_locations(network_lab), network_lab / "logs", show_progress=False)
    return network_lab


@pytest.fixture()
def configured(lab: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_settings(monkeypatch, lab_environment(lab))
    return lab


def run_main(argv: list[str]) -> int:
    return bench.main([*argv, "--patch_size", str(PATCH), "--quiet"])


def results(lab: Path) -> dict:
    (path,) = sorted((lab / "logs").glob("sentinel2_l1c_*.json"))[-1:]
    return json.loads(path.read_text())


def test_every_local_storage_and_format(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["--storages", "network", "temp", "--num_repeats", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "× fastest" in out and "results:" in out
    data = results(configured)
    assert data["tile"] == "35VLH" and data["year"] == 2024
    assert set(data["results"]) == {"network", "temp"}
    for storage in ("network", "temp"):
        assert set(data["results"][storage]) == set(FORMATS)
        for entry in data["results"][storage].values():
            durations = entry["durations"]
            assert len(durations) == 3
            assert entry["total_duration"] == pytest.approx(sum(durations))
            assert entry["mean_durations"] == pytest.approx(statistics.mean(durations))
            assert entry["stderr_durations"] == pytest.approx(
                statistics.stdev(durations) / math.sqrt(3)
            )
            assert entry["band_group_shapes"]["B02_B03_B04_B08"][2:] == [180, 180]
            assert entry["band_group_shapes"]["B01_B09_B10"][2:] == [30, 30]
    for storage in ("network", "temp"):  # the ideal: every chunk of the patch, decompressed
        ideal = data["ideal"][storage]
        assert len(ideal["durations"]) == 3 and ideal["chunks"] == 3  # one per band group
        layout = zarr_layouts.get(formats.ZARR.layout)
        chunk_bytes = sum(math.prod(layout.of(g, False).chunks) * 2 for g in BAND_GROUPS)
        assert ideal["decompressed_bytes"] == chunk_bytes > ideal["compressed_bytes"] > 0
    assert "network zarr / ideal" in out
    for record in data["repeats"]:
        assert len(set(record["checksums"].values())) == 1, (
            "every storage × format returns the same pixels"
        )
        assert len(record["checksums"]) == 2 * len(FORMATS)
    assert data["config"]["seed"] == 5 and data["environment"]["cpu_count"] >= 1
    assert BenchmarkConfig.from_json(data["config"]).to_json() == data["config"]
    readers = {key: entry["reader"] for key, entry in data["results"]["network"].items()}
    assert readers["zipzarr"]["store"] == "zarr3 > zip > file"  # the defaults: tensorstore
    assert readers["zarr"]["store"] == "zarr3 > file" and "GDAL" in readers["cog"]["library"]
    assert data["ideal"]["network"]["beside"] == "zarr"


def test_interrupted_run_leaves_valid_json(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = zarr_arrays.ZarrLoader.load

    def stop_in_third_repeat(self: zarr_arrays.ZarrLoader, patch: base.Patch) -> dict:
        calls["n"] += 1
        if calls["n"] == 4:  # warm-up, repeat 0, repeat 1, then the interruption
            raise KeyboardInterrupt
        return original(self, patch)

    monkeypatch.setattr(zarr_arrays.ZarrLoader, "load", stop_in_third_repeat)
    argv = ["--storages", "network", "--formats", "zarr@zarr-python", "--num_repeats", "5"]
    assert run_main([*argv, "--output", str(configured / "logs-cut")]) == 130
    (path,) = (configured / "logs-cut").glob("*.json")
    data = json.loads(path.read_text())
    durations = data["results"]["network"]["zarr@zarr-python"]["durations"]
    assert len(data["repeats"]) == 2 and len(durations) == 2


def test_different_pixels_fail_the_run(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = gdal_files.FileLoader.load

    def corrupted(self: gdal_files.FileLoader, patch: base.Patch) -> dict:
        pixels = original(self, patch)
        pixels["B01_B09_B10"][0, 0, 0, 0] += 1
        return pixels

    monkeypatch.setattr(gdal_files.FileLoader, "load", corrupted)
    assert (
        run_main(["--storages", "network", "--formats", "zarr", "cog", "--num_repeats", "2"]) == 1
    )
    assert "formats returned different pixels for the same patch" in capsys.readouterr().err


def test_missing_data_is_named_before_timing(
    configured: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DSLAB_S2L1C_TEMP_ZARR_PATH", str(tmp_path / "nothing"))
    assert run_main(["--storages", "temp", "--formats", "zarr", "--num_repeats", "2"]) == 1
    assert (
        f"{tmp_path / 'nothing'} (temp zarr) does not exist: run python -m sentinel2_l1c.stage first"
        in capsys.readouterr().err
    )


def test_bad_arguments(configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--num_repeats", "1"]) == 2
    assert "num_repeats must be at least 2" in capsys.readouterr().err
    assert bench.main(["--patch_size", "5000", "--quiet"]) == 2
    assert "patch_size must be a positive multiple of 60 m" in capsys.readouterr().err
    assert bench.main(["--quiet"]) == 2  # 5100 m does not fit the 3.66 km test tile
    assert "does not fit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--async_zipfs", "maybe"])
    with pytest.raises(SystemExit):
        bench.main(["--formats", "zarr@nothing"])
    with pytest.raises(ConfigError, match="unknown storage 'nvme'"):
        BenchmarkConfig(("nvme",), ("zarr",), 2, "35VLH", 2024, (0, 6000, 6000, 0))
    with pytest.raises(ConfigError, match="unknown reader 'zarr@nothing'"):
        BenchmarkConfig(("temp",), ("zarr@nothing",), 2, "35VLH", 2024, (0, 6000, 6000, 0))
    assert run_main(["--skip", "nvme/zarr"]) == 2
    assert "unknown storage 'nvme'" in capsys.readouterr().err
    skipping = BenchmarkConfig(
        ("network", "temp"), ("zarr", "cog"), 2, "35VLH", 2024, (0, 6000, 6000, 0),
        skip=("temp/cog",),
    )  # fmt: skip
    assert [pair.name for pair in skipping.pairs()] == ["network/zarr", "network/cog", "temp/zarr"]
    assert BenchmarkConfig.from_json(skipping.to_json()) == skipping
    other_tile = BenchmarkConfig(("network",), ("zarr",), 2, "35VLG", 2024, (0, 6000, 6000, 0))
    with pytest.raises(InputDataError):
        benchmark.catalogue(other_tile, lab_locations(configured))


@pytest.fixture(scope="module")
def published(lab: Path, local_cdse: LocalCdse) -> LocalCdse:
    """Every network format published to its bucket in the lab S3 store."""
    locations = local_cdse.locations(lab_locations(lab))
    publish_s3.publish(publish_s3.PublishOptions(), locations, lab / "logs", show_progress=False)
    return local_cdse


def test_every_reader_on_every_storage(
    configured: Path, published: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every format through every reader (GDAL, zarr-python over s3fs or obstore, tensorstore,
    the zip readers) on network, temp and S3: the same pixels as the default readers."""
    use_settings(monkeypatch, published.environment())
    keys = FILE_READER_KEYS
    output = configured / "logs-readers"
    argv = ["--storages", "network", "temp", "s3", "--formats", *keys, "--num_repeats", "2"]
    assert run_main([*argv, "--output", str(output)]) == 0
    (path,) = output.glob("*.json")
    data = json.loads(path.read_text())
    for storage in ("network", "temp", "s3"):
        assert set(data["results"][storage]) == set(keys)
    for record in data["repeats"]:
        assert len(record["checksums"]) == 3 * len(keys)
        assert len(set(record["checksums"].values())) == 1
    stores = {key: entry["reader"].get("store") for key, entry in data["results"]["s3"].items()}
    assert stores["zarr@zarr-python"] == "FsspecStore > S3FileSystem"
    assert stores["zipzarr@async_zipfs"] == "FsspecStore > AsyncZipFileSystem > S3FileSystem"
    assert stores["zipzarr@zipstore"] == "FsspecStore > AsyncFileSystemWrapper > ZipFileSystem"
    assert data["results"]["network"]["zipzarr@zipstore"]["reader"]["store"] == "ZipStore"
    assert stores["zarr@obstore"] == stores["zarr_sharded@obstore"] == "ObjectStore"
    assert stores["zarr"] == stores["zarr_sharded"] == "zarr3 > s3"
    assert stores["zipzarr"] == "zarr3 > zip > s3"
    assert data["ideal"]["s3"]["reader"]["store"] == "ObjectStore", "the ideal fetches via obstore"
    layouts = {key: entry["layout"] for key, entry in data["results"]["s3"].items()}
    assert layouts["zarr"] == layouts["zarr@zarr-python"] == formats.ZARR.layout, "recorded"
    assert layouts["zipzarr@zipstore"] == formats.ZARR.layout, "zipped: the Zarr it zips"
    assert layouts["zarr_sharded@obstore"] == formats.ZARR_SHARDED.layout
    assert layouts["cog"] is None and layouts["safe"] is None


def test_unpublished_s3_files_are_named(
    configured: Path,
    local_cdse: LocalCdse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings(monkeypatch, local_cdse.environment())
    monkeypatch.setenv("DSLAB_S2L1C_S3_COG_BUCKET", "never-published")
    assert run_main(["--storages", "s3", "--formats", "cog", "--num_repeats", "2"]) == 1
    assert (
        "s3://never-published/ (s3 cog) does not exist: run python -m sentinel2_l1c.publish_s3"
        in capsys.readouterr().err
    )


def test_cold_runs_evict_local_files(
    configured: Path, published: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, published.environment())
    evicted: list[int] = []
    original = benchmark.evict
    monkeypatch.setattr(
        benchmark, "evict", lambda files: evicted.append(len(files)) or original(files)
    )
    argv = ["--storages", "network", "s3", "--formats", "zarr", "--num_repeats", "2", "--cold"]
    assert run_main([*argv, "--output", str(configured / "logs-cold")]) == 0
    (path,) = (configured / "logs-cold").glob("*.json")
    data = json.loads(path.read_text())
    assert data["config"]["cold"] is True
    for record in data["repeats"]:
        assert record["cold"] == {
            "network/zarr": True,
            "network/ideal": True,
            "s3/zarr": "not applicable (remote)",
            "s3/ideal": "not applicable (remote)",
        }
    # every chunk file of the local store, before each Zarr and ideal load of each repeat
    assert len(evicted) == 4 and evicted[0] > 10
    evicted.clear()
    loader = ["--loader_formats", "zarr", "--concurrency", "1", "2", "--patches", "2"]
    assert run_main([*argv, *loader, "--output", str(configured / "logs-cold-loader")]) == 0
    # and before the loader mode's patches of the local pair, at each concurrency
    assert len(evicted) == 4 + 2


def s3_through(
    endpoint: str, published: LocalCdse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab's S3 storage reached through a proxy at ``endpoint``, with 8 attempts."""
    files = write_aws_files(tmp_path / "aws", endpoint, {LAB_S3_PROFILE: published.storage_user})
    use_settings(monkeypatch, files.environment(), {"DSLAB_NETWORK_ATTEMPTS": "8"})


def test_s3_loads_recover_from_injected_faults(
    configured: Path,
    published: LocalCdse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every 7th S3 request fails (a 503, or a body cut short): reads of every S3 client
    (GDAL, also through ``/vsisparse/``, tensorstore, s3fs, obstore, async_zipfs) are retried
    and return the same pixels (COG on S3 used to fail every run)."""
    with LabProxy(published.store.s3_port, every=7) as proxy:
        s3_through(proxy.endpoint, published, tmp_path, monkeypatch)
        keys = ["cog", "zarr", "zipzarr", "zarr@zarr-python", "zarr@obstore", "zipzarr@async_zipfs"]
        keys += ["safe_virtual@gdal_tlm"]
        argv = ["--storages", "network", "s3", "--formats", *keys]
        argv += ["--num_repeats", "2", "--output", str(tmp_path / "logs")]
        assert run_main(argv) == 0, capsys.readouterr().err
    assert proxy.faults["503"] > 0 and proxy.faults["reset"] > 0
    data = read_benchmark(next((tmp_path / "logs").glob("*.json")))
    assert data.mismatches() == [] and len(data.repeats[0].checksums) == 2 * len(keys)


def test_a_soak_under_faults_stays_correct_and_reports_each_interval(
    configured: Path,
    published: LocalCdse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every 10th S3 request fails while patches flow for 6 s at 4 in flight: no wrong pixel,
    five reports of patches/s, memory, open files and sockets."""
    profile = "loopback,fault_every=10"
    with ProxyProcess(published.store.s3_port, network.parse(profile)) as proxy:
        s3_through(proxy.endpoint, published, tmp_path, monkeypatch)
        argv = ["--storages", "s3", "--formats", "zarr_sharded@obstore", "--num_repeats", "2"]
        argv += ["--concurrency", "4", "--duration", "0.1", "--patches", "6"]
        assert bench.main([*argv, "--patch_size", str(PATCH), "--output", str(tmp_path / "logs")]) == 0  # fmt: skip
    reports = [line for line in capsys.readouterr().err.splitlines() if line.startswith("soak ")]
    assert len(reports) == 5 and "patches/s RSS" in reports[0] and "sockets" in reports[0]
    data = read_benchmark(next((tmp_path / "logs").glob("*.json")))
    soaked = data.soak["s3"]["zarr_sharded@obstore"]["4"]
    assert soaked["patches"] > 6 and soaked["wrong"] == 0 and len(soaked["intervals"]) == 5
    assert set(soaked["growth"]) == {"rss_mb", "open_files", "sockets"}
    assert data.config["duration"] == 0.1 and data.mismatches() == []


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_remote_jp2_tiles_read_in_threads_are_right(
    local_cdse: LocalCdse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows over several JP2 tiles, read from S3 in parallel threads as FileLoader does.

    Without GDAL_NUM_THREADS=1 GDAL's decode threads fetched tiles without the thread's S3
    settings and left them zero (seen on scale-2 tiles; the test archive has one tile per file).
    """
    rng = np.random.default_rng(1)
    pixels = rng.integers(1, 4000, (512, 512), dtype=np.uint16)
    path = tmp_path / "tiled.jp2"
    profile = dict(driver="JP2OpenJPEG", width=512, height=512, count=1, dtype="uint16")
    with rasterio.open(path, "w", **profile, REVERSIBLE="YES", QUALITY="100",
                       blockxsize=128, blockysize=128) as dataset:  # fmt: skip
        dataset.write(pixels, 1)
    client = local_cdse.store.client(local_cdse.storage_user)
    if "jp2-tiles" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="jp2-tiles")
    client.upload_file(str(path), "jp2-tiles", "tiled.jp2")
    locations = local_cdse.locations(Locations({S3_PROFILE: LAB_S3_PROFILE}))
    options = s3_gdal_options(locations.s3_account)
    windows = [Window(x, y, 200, 200) for x in (0, 100, 300) for y in (50, 250)]

    def read(window: Window) -> np.ndarray:
        with rasterio.Env(**options):
            return read_band("/vsis3/jp2-tiles/tiled.jp2", window)

    with ThreadPoolExecutor(4) as pool:
        for window, remote in zip(windows, pool.map(read, windows), strict=True):
            rows, cols = window.toslices()
            assert np.array_equal(remote, pixels[rows, cols])


def test_loader_mode_returns_the_same_pixels_at_every_concurrency(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Threads sharing one loader: every storage × format and number of patches in flight
    loads the same patches as one-at-a-time loads do; patches/s and percentiles add up. The
    formats decoding JPEG 2000 per load are left out as the demo leaves them out (seconds per
    load; their loaders run in loader mode in the worker-process test)."""
    output = configured / "logs-threads"
    chosen = [name for name in FORMATS if name not in demo.decoded_per_load()]
    argv = ["--storages", "network", "temp", "--num_repeats", "2", "--output", str(output)]
    argv += ["--loader_formats", *chosen]
    assert run_main([*argv, "--concurrency", "1", "3", "--patches", "3"]) == 0
    assert "in flight" in capsys.readouterr().out
    (path,) = output.glob("*.json")
    data = read_benchmark(path)
    assert data.mismatches() == []
    for storage in ("network", "temp"):
        assert set(data.throughput[storage]) == set(chosen)
        for by_concurrency in data.throughput[storage].values():
            assert set(by_concurrency) == {1, 3}
            for entry in by_concurrency.values():
                assert entry.loader == "threads" and entry.patches == len(entry.latencies) == 3
                assert entry.patches_per_second == pytest.approx(3 / entry.seconds)
                assert min(entry.latencies) <= entry.percentile(0.5) <= entry.percentile(0.95)
    config = BenchmarkConfig.from_json(data.config)
    assert config.concurrency == (1, 3) and config.patches == 3
    # the checksum is that of the same patches loaded one by one
    locations = lab_locations(configured)
    pair = Pair.parse("temp", "cog")
    loader = benchmark.open_loader(pair, locations, benchmark.catalogue(config, locations))
    one_by_one = [loader_mode.timed_load(loader, p) for p in loader_patches(config)]
    loader.close()
    expected = loader_mode.measurement("threads", 1.0, one_by_one).checksum
    assert data.throughput["network"]["zarr"][3].checksum == expected
    json_data = json.loads(path.read_text())["throughput"]["temp"]["zipzarr"]["3"]
    assert json_data["latency_p95"] >= json_data["latency_p50"] > 0
    chart = configured / "img-concurrency" / "chart.png"
    report.concurrency_chart(data, chart)
    assert chart.stat().st_size > 10_000


def test_loader_mode_in_worker_processes_with_every_reader(
    configured: Path, published: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker process opens its own store of every format and reader, on a local and
    the S3 storage, as a DataLoader's workers do: the same pixels as threads."""
    use_settings(monkeypatch, published.environment())
    output = configured / "logs-processes"
    argv = ["--storages", "temp", "s3", "--formats", *FILE_READER_KEYS, "--num_repeats", "2"]
    argv += ["--concurrency", "2", "--patches", "2", "--loader", "processes"]
    assert run_main([*argv, "--output", str(output)]) == 0
    data = read_benchmark(next(output.glob("*.json")))
    assert data.mismatches() == []
    entries = [e[2] for by_key in data.throughput.values() for e in by_key.values()]
    assert len(entries) == 2 * len(FILE_READER_KEYS)
    assert {e.loader for e in entries} == {"processes"}
    assert data.environment["network"] == {
        "s3": "loopback: unshaped",
        "cdse": "loopback: unshaped",
        "drive": "folder",
    }


def _refuse(pair: tuple[str, str]) -> base.Loader:
    raise InputDataError(f"{pair[0]} {pair[1]}: no such store")


def test_a_worker_that_cannot_open_its_store_ends_the_run_in_one_line() -> None:
    warm_up = base.Patch(300000, 6800040, PATCH)
    with pytest.raises(loader_mode.DslabError, match="could not open its stores: temp zarr: no "):
        loader_mode.WorkerPool(_refuse, [("temp", "zarr")], warm_up, 2)


def test_best_patches_per_second_feed_the_throughput_estimate() -> None:
    """Seconds per patch of a route: 1 / its best patches/s where a loader mode measured it,
    else its mean load time; the section reads back, and a bad concurrency is named."""
    data = BenchmarkResults("35VLH", 2024)
    for key, seconds in (("zarr", 0.5), ("cog", 2.0)):
        data.measurement("s3", key).add(seconds)
        data.measurement("s3", key).add(seconds)
    by_concurrency = data.throughput.setdefault("s3", {}).setdefault("zarr", {})
    for concurrency, seconds in ((1, 4.0), (4, 1.0), (16, 2.0)):  # 8 patches each
        by_concurrency[concurrency] = LoaderMeasurement("threads", 8, seconds, [0.5] * 8, "x")
    assert throughput.loads_from_results(data) == {"s3/zarr": 1 / 8, "s3/cog": 2.0}
    assert data.best_patches_per_second() == {"s3/zarr": (8.0, 4)}
    again = BenchmarkResults.from_json(json.loads(data.text()))
    assert again.throughput["s3"]["zarr"][4] == by_concurrency[4]
    broken = json.loads(data.text())
    broken["throughput"]["s3"]["zarr"]["0"] = broken["throughput"]["s3"]["zarr"]["1"]
    with pytest.raises(InputDataError, match="not a number of patches in flight"):
        BenchmarkResults.from_json(broken)
    by_concurrency[4] = LoaderMeasurement("threads", 8, 1.0, [0.5] * 8, "other pixels")
    assert data.mismatches() == ["loader mode: s3/zarr×1, s3/zarr×16 vs s3/zarr×4"]
