"""report: charts of benchmark results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentinel2_l1c import report
from sentinel2_l1c.records.benchmark import read_benchmark


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
