"""benchmark_patch_load on a small lab: schema, equal pixels everywhere, seeds, statistics."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest

from sentinel2_l1c import benchmark_patch_load as bench
from sentinel2_l1c import convert_safe_to_cog, convert_safe_to_zarr, zip_zarr
from sentinel2_l1c.benchmark_patch_load import BenchmarkConfig, plan_order, plan_patch
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_environment
from sentinel2_l1c.stores import FileObjectZipStore
from sentinel2_l1c.utils import FORMATS

from .conftest import Archive

PATCH = 1800  # metres: fits the 3.66 km test tiles


@pytest.fixture(scope="module")
def lab(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Network storage with every format, a temp copy, and the lab settings."""
    lab = tmp_path_factory.mktemp("benchlab")
    settings = lab_environment(lab)
    network = {fmt: Path(settings[f"DSLAB_S2L1C_NETWORK_{fmt.upper()}_PATH"]) for fmt in FORMATS}
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
    for fmt in FORMATS:
        temp = Path(settings[f"DSLAB_S2L1C_TEMP_{fmt.upper()}_PATH"])
        temp.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if network[fmt].is_dir() else shutil.copy)(network[fmt], temp)
    return lab


@pytest.fixture()
def configured(lab: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in lab_environment(lab).items():
        monkeypatch.setenv(name, value)
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
    for record in data["repeats"]:
        assert len(set(record["checksums"].values())) == 1, (
            "every storage × format returns the same pixels"
        )
        assert len(record["checksums"]) == 2 * len(FORMATS)
    assert data["config"]["seed"] == 5 and data["environment"]["cpu_count"] >= 1
    assert BenchmarkConfig.from_json(data["config"]).to_json() == data["config"]


def test_same_seed_same_patches_and_order() -> None:
    config = BenchmarkConfig(
        ("network", "temp"),
        ("zarr", "cog"),
        3,
        "35VLH",
        2024,
        (300000, 6800040, 303660, 6796380),
        patch_size=PATCH,
        seed=9,
    )
    again = BenchmarkConfig.from_json(config.to_json())
    for repeat in range(3):
        assert plan_patch(config, repeat) == plan_patch(again, repeat)
        assert plan_order(config, repeat) == plan_order(again, repeat)
        patch = plan_patch(config, repeat)
        assert (patch.x - 300000) % 60 == 0 and (6800040 - patch.y) % 60 == 0
        assert patch.x + PATCH <= 303660 and patch.y - PATCH >= 6796380
    other = BenchmarkConfig.from_json({**config.to_json(), "seed": 10})
    assert [plan_patch(other, r) for r in range(3)] != [plan_patch(config, r) for r in range(3)]


def test_async_zipfs_false_uses_zarr_zipstore(
    configured: Path, local_cdse: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in local_cdse.environment().items():
        monkeypatch.setenv(name, value)
    config = BenchmarkConfig(
        ("network", "s3"),
        ("zipzarr",),
        2,
        "35VLH",
        2024,
        (300000, 6800040, 303660, 6796380),
        patch_size=PATCH,
    )
    client = local_cdse.store.client(local_cdse.storage_user)
    bucket = lab_environment(configured)["DSLAB_S2L1C_S3_ZIPZARR_BUCKET"]
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    client.upload_file(
        lab_environment(configured)["DSLAB_S2L1C_NETWORK_ZIPZARR_PATH"],
        bucket,
        "sentinel2_l1c_zipzarr.zip",
    )
    sync = BenchmarkConfig.from_json({**config.to_json(), "async_zipfs": False})
    from zarr.storage import ZipStore

    assert isinstance(
        bench.open_loader("network", "zipzarr", sync).arrays["B01_B09_B10"].store, ZipStore
    )
    assert isinstance(
        bench.open_loader("s3", "zipzarr", sync).arrays["B01_B09_B10"].store, FileObjectZipStore
    )
    assert not isinstance(
        bench.open_loader("s3", "zipzarr", config).arrays["B01_B09_B10"].store, ZipStore
    )
    target, run = bench.run_benchmark(sync, configured / "logs-zip", quiet=True)
    assert bench.mismatches(run) == []


def test_interrupted_run_leaves_valid_json(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = bench.ZarrLoader.load

    def stop_in_third_repeat(self: bench.ZarrLoader, patch: bench.Patch) -> dict:
        calls["n"] += 1
        if calls["n"] == 4:  # warm-up, repeat 0, repeat 1, then the interruption
            raise KeyboardInterrupt
        return original(self, patch)

    monkeypatch.setattr(bench.ZarrLoader, "load", stop_in_third_repeat)
    assert (
        run_main(
            [
                "--storages",
                "network",
                "--formats",
                "zarr",
                "--num_repeats",
                "5",
                "--output",
                str(configured / "logs-cut"),
            ]
        )
        == 130
    )
    (path,) = (configured / "logs-cut").glob("*.json")
    data = json.loads(path.read_text())
    assert len(data["repeats"]) == 2 and len(data["results"]["network"]["zarr"]["durations"]) == 2


def test_different_pixels_fail_the_run(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = bench.FileLoader.load

    def corrupted(self: bench.FileLoader, patch: bench.Patch) -> dict:
        pixels = original(self, patch)
        pixels["B01_B09_B10"][0, 0, 0, 0] += 1
        return pixels

    monkeypatch.setattr(bench.FileLoader, "load", corrupted)
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
        f"{tmp_path / 'nothing'} (temp zarr) does not exist: run the staging step first"
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
    with pytest.raises(ConfigError):
        BenchmarkConfig(("nvme",), ("zarr",), 2, "35VLH", 2024, (0, 6000, 6000, 0))
    with pytest.raises(InputDataError):
        bench.open_loader(
            "network",
            "zarr",
            BenchmarkConfig(("network",), ("zarr",), 2, "35VLG", 2024, (0, 6000, 6000, 0)),
        )


@pytest.fixture(scope="module")
def published(lab: Path, local_cdse: LocalCdse) -> LocalCdse:
    """Every network format copied to its bucket in the lab S3 store."""
    settings = lab_environment(lab)
    client = local_cdse.store.client(local_cdse.storage_user)
    existing = {b["Name"] for b in client.list_buckets()["Buckets"]}
    for fmt in FORMATS:
        bucket = settings[f"DSLAB_S2L1C_S3_{fmt.upper()}_BUCKET"]
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        source = Path(settings[f"DSLAB_S2L1C_NETWORK_{fmt.upper()}_PATH"])
        if source.is_file():
            client.upload_file(str(source), bucket, settings["DSLAB_S2L1C_S3_ZIPZARR_KEY"])
            continue
        for path in source.rglob("*"):
            if path.is_file():
                client.upload_file(str(path), bucket, path.relative_to(source).as_posix())
    return local_cdse


def test_every_format_on_s3(
    configured: Path, published: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAFE and COG through GDAL /vsis3/, Zarr formats through s3fs: the same pixels."""
    for name, value in published.environment().items():
        monkeypatch.setenv(name, value)
    assert (
        run_main(
            [
                "--storages",
                "network",
                "s3",
                "--num_repeats",
                "2",
                "--output",
                str(configured / "logs-s3"),
            ]
        )
        == 0
    )
    (path,) = (configured / "logs-s3").glob("*.json")
    data = json.loads(path.read_text())
    assert set(data["results"]["s3"]) == set(FORMATS)
    for record in data["repeats"]:
        assert len(record["checksums"]) == 2 * len(FORMATS)
        assert len(set(record["checksums"].values())) == 1


def test_unpublished_s3_files_are_named(
    configured: Path,
    local_cdse: LocalCdse,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in local_cdse.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DSLAB_S2L1C_S3_COG_BUCKET", "never-published")
    assert run_main(["--storages", "s3", "--formats", "cog", "--num_repeats", "2"]) == 1
    assert "/vsis3/never-published/35VLH/2024/" in capsys.readouterr().err


def test_cold_runs_evict_local_files(
    configured: Path, published: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in published.environment().items():
        monkeypatch.setenv(name, value)
    evicted: list[int] = []
    original = bench.evict
    monkeypatch.setattr(bench, "evict", lambda files: evicted.append(len(files)) or original(files))
    argv = ["--storages", "network", "s3", "--formats", "zarr", "--num_repeats", "2", "--cold"]
    assert run_main([*argv, "--output", str(configured / "logs-cold")]) == 0
    (path,) = (configured / "logs-cold").glob("*.json")
    data = json.loads(path.read_text())
    assert data["config"]["cold"] is True
    for record in data["repeats"]:
        assert record["cold"] == {"network/zarr": True, "s3/zarr": "not applicable (remote)"}
    assert len(evicted) == 2 and evicted[0] > 10  # every chunk file of the local store, per repeat
