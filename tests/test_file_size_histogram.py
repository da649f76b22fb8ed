"""file_size_histogram on local and S3 stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel2_l1c import file_size_histogram
from sentinel2_l1c.lab.layout import lab_environment
from tests.helpers import use_settings


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
