"""Nothing hangs: an endpoint that accepts connections and never answers ends every tool
within its deadline × attempts, with one error line (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from botocore.exceptions import ReadTimeoutError
from rasterio.errors import RasterioError

from sentinel2_l1c import benchmark_patch_load, intake_cdse_s3, stage
from sentinel2_l1c.async_zipfs import AsyncZipFileSystem
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment
from sentinel2_l1c.lab.object_store import Identity, write_aws_files
from sentinel2_l1c.lab.proxy import SilentEndpoint
from sentinel2_l1c.remote import RetryPolicy
from sentinel2_l1c.s3_account import S3Account

from .conftest import one_error_line, use_settings

TIMEOUT, ATTEMPTS = 1, 2
POLICY = RetryPolicy(attempts=ATTEMPTS, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)
# Python start-up and imports of a command, on top of the policy's worst case
SLACK = 10.0


@pytest.fixture()
def silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SilentEndpoint:
    """A hung endpoint that the lab's profiles (S3 storage and CDSE) point at."""
    with SilentEndpoint() as endpoint:
        identity = Identity("nobody", ("Read",))
        files = write_aws_files(
            tmp_path / "aws", endpoint.endpoint, {LAB_S3_PROFILE: identity, "cdse": identity}
        )
        use_settings(
            monkeypatch,
            files.environment(),
            {"DSLAB_NETWORK_TIMEOUT": str(TIMEOUT), "DSLAB_NETWORK_ATTEMPTS": str(ATTEMPTS)},
        )
        yield endpoint


def ends_in_time(command, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    started = time.monotonic()
    line = one_error_line(command, argv, capsys)
    seconds = time.monotonic() - started
    assert seconds < POLICY.worst_case + SLACK, f"took {seconds:.1f} s"
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
    assert f"STAC API {silent.endpoint}: gave up after {ATTEMPTS} attempts" in line


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


def test_s3fs_and_gdal_have_the_deadlines(silent: SilentEndpoint, tmp_path: Path) -> None:
    """The clients under Zarr and COG loads, called directly (the commands above stop at
    their first S3 request, made with boto3)."""
    account = S3Account(
        LAB_S3_PROFILE,
        tmp_path / "aws" / "aws-config",
        tmp_path / "aws" / "aws-credentials",
        POLICY,
    )
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):  # s3fs gives up with the last timeout
        account.filesystem(asynchronous=False).cat_file("bucket/key")
    zip_fs = AsyncZipFileSystem("bucket/store.zip", fs=account.filesystem(asynchronous=False))
    with pytest.raises(ReadTimeoutError):
        zip_fs.find("")
    with pytest.raises(RasterioError), rasterio.Env(**account.gdal_options()):
        rasterio.open("/vsis3/bucket/file.tif")
    assert time.monotonic() - started < 3 * POLICY.worst_case + SLACK


READERS_AGAINST_SILENT_S3 = """
import json, sys, time
from pathlib import Path
from sentinel2_l1c import formats
from sentinel2_l1c.errors import RemoteError
from sentinel2_l1c.loaders import Catalogue
from sentinel2_l1c.remote import RetryPolicy
from sentinel2_l1c.s3_account import S3Account
from sentinel2_l1c.storages import BucketPlace

aws, profile, timeout, attempts = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
policy = RetryPolicy(attempts=attempts, connect_timeout=timeout, read_timeout=timeout)
account = S3Account(profile, aws / "aws-config", aws / "aws-credentials", policy)
for key in sys.argv[5:]:
    fmt, reader = formats.reader(key)
    place = BucketPlace(account, "bucket", "store.zip" if fmt.is_archive else "")
    started = time.monotonic()
    try:
        reader.open(place, Catalogue("35VLH", 2024, ()), "publish_s3").close()
        error = None
    except RemoteError as err:
        error = str(err)
    print(json.dumps({"key": key, "seconds": time.monotonic() - started, "error": error}))
"""


def test_obstore_and_tensorstore_have_the_deadlines(silent: SilentEndpoint, tmp_path: Path) -> None:
    """In a fresh process, as a command is: tensorstore reads its deadlines from the
    environment once per process (without those an earlier test's reads left there)."""
    keys = ["zarr@obstore", "zarr@tensorstore", "zipzarr@tensorstore"]
    done = subprocess.run(
        [sys.executable, "-c", READERS_AGAINST_SILENT_S3, str(tmp_path / "aws"), LAB_S3_PROFILE,
         str(TIMEOUT), str(ATTEMPTS), *keys],
        capture_output=True, text=True, timeout=len(keys) * (POLICY.worst_case + SLACK),
        env={k: v for k, v in os.environ.items() if not k.startswith("TENSORSTORE_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["key"] for o in outcomes] == keys
    for outcome in outcomes:
        assert outcome["error"] and outcome["error"].startswith("s3://bucket/"), outcome
        assert "\n" not in outcome["error"]
        assert outcome["seconds"] < POLICY.worst_case + SLACK, outcome
