"""throughput, report and file_size_histogram: the first version's numbers, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sentinel2_l1c import file_size_histogram, report, throughput
from sentinel2_l1c.lab.layout import lab_environment
from sentinel2_l1c.results import ActionLog, BenchmarkResults, read_benchmark

from .conftest import use_settings

# The first version's inputs (its README and throughput.ods): mean load times of one
# tile-year patch on S3 and NVMe, and staging minutes per tile-year.
FIRST_LOADS = [
    "s3/zarr=7.670729303359986",
    "s3/zipzarr=7.079422011375427",
    "temp/zarr=1.1930245089530944",
    "temp/zipzarr=1.3410639023780824",
]
FIRST_STAGING = ["copy:s3:zarr=27", "copy:s3:zipzarr=12", "unzip:temp:zipzarr=14"]
# Its published steps per job; its last route forgot the 12 min copy before the unzip.
PUBLISHED = {
    "S3 Zarr": 6758.1579208241,
    "S3 Zarr → temp Zarr": 39378.9060052304,
    "S3 zipped Zarr": 7322.6316946076,
    "S3 zipped Zarr → temp zipped Zarr": 37045.2145583096,
}
WRONG_LAST_ROW = 41340.3074537667


def test_throughput_reproduces_the_first_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart, ods = tmp_path / "t.png", tmp_path / "t.ods"
    argv = ["--load", *FIRST_LOADS, "--staging", *FIRST_STAGING, "--chart", str(chart)]
    assert throughput.main([*argv, "--ods", str(ods), "--quiet"]) == 0
    out = capsys.readouterr().out
    results = pd.read_excel(ods, engine="odf", sheet_name="results")
    steps = dict(zip(results["route"], results["steps per job"], strict=True))
    for route, value in PUBLISHED.items():
        assert steps[route] == pytest.approx(value, rel=1e-9)
        assert f"{value:.0f}" in out
    unzipped = steps["S3 zipped Zarr → temp zipped Zarr → temp Zarr"]
    expected = (3 * 86400 - 15 * (12 + 14) * 60) / (5 * 1.1930245089530944)
    assert unzipped == pytest.approx(expected) and unzipped < WRONG_LAST_ROW
    assert len(results) == 5  # only routes whose every input is known
    inputs = pd.read_excel(ods, engine="odf", sheet_name="inputs")
    values = dict(zip(inputs["input"], inputs["value"], strict=True))
    assert values["job length (days)"] == 3 and values["tile-years staged"] == 15
    assert values["load time (s) temp/zarr"] == pytest.approx(1.1930245089530944)
    assert values["staging time per tile-year (min) unzip:temp:zipzarr"] == 14
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_throughput_reads_results_and_stage_files(tmp_path: Path) -> None:
    results = {
        "tile": "35VLH",
        "year": 2024,
        "results": {
            "s3": {"zarr": {"mean_durations": 2.0, "stderr_durations": 0.1}},
            "temp": {"zarr": {"mean_durations": 1.0, "stderr_durations": 0.1}},
        },
    }
    action = {"source_storage": "s3", "format": "zipzarr", "skipped_files": 0}
    stage = {
        "actions": [
            {**action, "action": "stream-unzip", "seconds": 120.0},
            {**action, "action": "copy", "seconds": 60.0, "skipped_files": 3},  # not timed
        ]
    }
    (tmp_path / "r.json").write_text(json.dumps(results))
    (tmp_path / "s.json").write_text(json.dumps(stage))
    loads = throughput.loads_from_results(BenchmarkResults.from_json(results))
    minutes = throughput.staging_from_stage(ActionLog.read(tmp_path / "s.json"))
    assert minutes == {"stream-unzip:s3:zipzarr": 2.0}
    estimates = {
        e.route.label: e
        for e in throughput.estimate(loads, minutes, throughput.Assumptions(1, 1, 10))
    }
    assert set(estimates) == {"S3 Zarr", "S3 zipped Zarr → stream-unzip → temp Zarr"}
    assert estimates["S3 Zarr"].steps == pytest.approx(86400 / 2)
    assert estimates["S3 zipped Zarr → stream-unzip → temp Zarr"].steps == pytest.approx(
        86400 - 1200
    )
    argv = ["--results", str(tmp_path / "r.json"), "--stage", str(tmp_path / "s.json"), "--quiet"]
    argv += ["--chart", str(tmp_path / "c.png"), "--ods", str(tmp_path / "t.ods")]
    assert throughput.main(argv) == 0


def test_throughput_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert throughput.main(["--load", "s3/zarr=fast", "--quiet"]) == 2
    assert "KEY=NUMBER" in capsys.readouterr().err
    assert throughput.main(["--load", "temp/cog=1", "--quiet"]) == 1  # staging unknown
    assert "no route has all its load and staging times" in capsys.readouterr().err
    assert throughput.main(["--results", str(tmp_path / "none.json"), "--quiet"]) == 1
    assert "none.json: no such file" in capsys.readouterr().err


def results_file(folder: Path) -> Path:
    data = {
        "tile": "35VLH",
        "year": 2024,
        "config": {"patch_size": 5100, "num_repeats": 3},
        "results": {
            storage: {
                fmt: {"mean_durations": mean * factor, "stderr_durations": 0.01 * mean}
                for fmt, mean in (("zarr", 0.5), ("cog", 1.1), ("safe", 11.4))
            }
            for storage, factor in (("network", 1.0), ("s3", 1.4))
        },
        "ideal": {"network": {"mean_durations": 0.4, "stderr_durations": 0.01}},
    }
    path = folder / "sentinel2_l1c_2026-01-01_00-00-00.json"
    path.write_text(json.dumps(data))
    return path


def test_report_charts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = results_file(tmp_path)
    second = tmp_path / "other.json"
    second.write_text(first.read_text())
    assert report.main([str(first), str(second), "--img", str(tmp_path / "img"), "--quiet"]) == 0
    for name in (
        f"load_times_{first.stem}.png",
        "load_times_other.png",
        "load_times_comparison.png",
    ):
        png = tmp_path / "img" / name
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    assert [row[0] for row in report.rows(read_benchmark(first))][:2] == [
        "network ideal", "network zarr",
    ]  # fmt: skip
    assert "network ideal" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert report.main([str(tmp_path / "bad.json"), "--quiet"]) == 1


def test_file_size_histogram_local_and_s3(
    network_lab: Path, local_cdse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    use_settings(monkeypatch, lab_environment(network_lab), local_cdse.environment())
    target = tmp_path / "h.png"
    assert file_size_histogram.main(["--format", "zarr", "--chart", str(target), "--quiet"]) == 0
    out = capsys.readouterr().out
    for group in ("B02_B03_B04_B08", "B05_B06_B07_B8A_B11_B12", "B01_B09_B10"):
        assert f"{group}: 1 object, mean" in out  # one time chunk: 16 dates < 20/40/80
    assert target.stat().st_size > 10_000
    monkeypatch.setenv("DSLAB_S2L1C_S3_ZARR_SHARDED_BUCKET", "never-published")
    argv = ["--storage", "s3", "--format", "zarr_sharded", "--quiet"]
    assert file_size_histogram.main(argv) == 1
    assert (
        "s3://never-published/ (s3 zarr_sharded) does not exist: run python -m "
        "sentinel2_l1c.publish_s3 first" in capsys.readouterr().err
    )
    objects = [("35VLH/2024/B01_B09_B10/data/c/0/0/0/0", 5), ("35VLH/2024/zarr.json", 9)]
    assert file_size_histogram.sizes_by_group(objects) == {"B01_B09_B10": [5]}
