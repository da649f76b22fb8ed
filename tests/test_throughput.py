"""throughput: the first version's numbers, real results and stage files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sentinel2_l1c import throughput
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.records.benchmark import BenchmarkResults

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


def test_full_size_estimate_scales_loads_by_pixels_and_staging_by_the_tile_year(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worked example: a 1098 px lab tile (10980 m) with 12 dates and 510 m patches."""
    shapes = {"B02_B03_B04_B08": [12, 4, 51, 51], "B05_B06_B07_B8A_B11_B12": [12, 6, 25, 25],
              "B01_B09_B10": [12, 3, 8, 8]}  # fmt: skip
    delivered = 2 * 12 * (4 * 51 * 51 + 6 * 25 * 25 + 3 * 8 * 8)
    results = {
        "tile": "35VLH", "year": 2024,
        "config": {"bounds": [300000.0, 6810960.0, 310980.0, 6799980.0]},  # 10980 m square
        "results": {
            "s3": {"zarr": {"durations": [0.1, 0.1], "band_group_shapes": shapes}},
            "temp": {"zarr": {"durations": [0.05, 0.05], "band_group_shapes": shapes}},
        },
        "repeats": [{"repeat": r, "patch": {}, "checksums": {},
                     "bytes": {"s3/zarr": delivered, "temp/zarr": delivered}} for r in (0, 1)],
    }  # fmt: skip
    parsed = BenchmarkResults.from_json(results)
    full = throughput.FullSize.of(parsed)
    assert full is not None
    # A full-size patch: 510² px × 4 bands + 255² × 6 + 85² × 3, 192 dates, 2 bytes each.
    patch = 2 * 192 * (4 * 510**2 + 6 * 255**2 + 3 * 85**2)
    assert throughput.full_patch_bytes() == patch
    assert full.loads == {"s3/zarr": pytest.approx(patch / delivered)} | {
        "temp/zarr": pytest.approx(patch / delivered)
    }
    assert full.staging == pytest.approx(10980**2 * 192 / (1098**2 * 12))  # 100 × 16
    estimates = {
        e.route.label: e
        for e in throughput.estimate(
            throughput.loads_from_results(parsed),
            {"copy:s3:zarr": 0.01},
            throughput.Assumptions(3, 5, 15),
            full,
        )  # fmt: skip
    }
    staged = estimates["S3 Zarr → temp Zarr"].full_size
    assert staged is not None
    assert staged.load_seconds == pytest.approx(0.05 * patch / delivered)
    assert staged.staging_minutes == pytest.approx(15 * 0.01 * 1600)  # 16 min a tile-year
    training = 3 * 86400 - 60 * 15 * 16
    assert staged.steps == pytest.approx(training / (5 * 0.05 * patch / delivered))
    stage = {"actions": [{"action": "copy", "source_storage": "s3", "format": "zarr",
                          "seconds": 0.6, "skipped_files": 0}]}  # fmt: skip
    (tmp_path / "r.json").write_text(json.dumps(results))
    (tmp_path / "s.json").write_text(json.dumps(stage))
    argv = ["--results", str(tmp_path / "r.json"), "--stage", str(tmp_path / "s.json")]
    assert throughput.main([*argv, "--chart", str(tmp_path / "c.png"), "--ods",
                            str(tmp_path / "t.ods")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "full-size estimate: a tile-year of 10980 px and 192 dates" in out
    assert "staging × 1.6e+03" in out
    best = "most training steps per job: S3 Zarr → temp Zarr: full-size tile-year estimate "
    assert f"{best}{staged.steps:,.0f}" in out
