"""Nothing hangs: an endpoint that accepts connections and never answers ends every tool
within its deadline × attempts, with one error line (issue 16)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sentinel2_l1c import benchmark_patch_load, intake_cdse_s3, stage
from sentinel2_l1c.lab.layout import lab_environment
from sentinel2_l1c.lab.proxy import SilentEndpoint
from tests.helpers import (
    SILENT_ATTEMPTS,
    SILENT_POLICY,
    SLACK,
    one_error_line,
    use_settings,
)


def ends_in_time(command, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    started = time.monotonic()
    line = one_error_line(command, argv, capsys)
    seconds = time.monotonic() - started
    assert seconds < SILENT_POLICY.worst_case + SLACK, f"took {seconds:.1f} s"
    return line


def test_intake_against_a_silent_stac_api(
    silent: SilentEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings(
        monkeypatch,
        {"DSLAB_S2L1C_STAC_URL": silent.endpoint, "DSLAB_S2L1C_NETWORK_SAFE_PATH": str(tmp_path)},
    )
    line = ends_in_time(intake_cdse_s3.main, ["--quiet"], capsys)
    assert f"STAC API {silent.endpoint}: gave up after {SILENT_ATTEMPTS} attempts" in line


def test_stream_unzip_and_benchmark_against_a_silent_s3(
    silent: SilentEndpoint,
    network_lab: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings(monkeypatch, lab_environment(network_lab))
    line = ends_in_time(stage.main, ["--quiet", "--stream-unzip"], capsys)
    assert "s3://sentinel2-l1c-zipzarr/" in line and "gave up after 2 attempts" in line
    argv = ["--quiet", "--storages", "s3", "--num-repeats", "2", "--patch-size", "1800"]
    for formats in (["zarr"], ["zipzarr"], ["cog"]):
        line = ends_in_time(benchmark_patch_load.main, [*argv, "--formats", *formats], capsys)
        assert "gave up after 2 attempts" in line
