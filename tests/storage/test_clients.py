"""Every client made in ``clients`` has the retry policy's deadlines: against an endpoint that
never answers, each gives up within attempts × timeouts."""

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

from sentinel2_l1c.lab.layout import LAB_S3_PROFILE
from sentinel2_l1c.lab.proxy import SilentEndpoint
from sentinel2_l1c.storage.clients import s3_filesystem, s3_gdal_options
from sentinel2_l1c.storage.s3_account import S3Account
from sentinel2_l1c.zipfs.filesystem import AsyncZipFileSystem
from tests.helpers import SILENT_ATTEMPTS, SILENT_POLICY, SILENT_TIMEOUT, SLACK


def test_s3fs_and_gdal_have_the_deadlines(silent: SilentEndpoint, tmp_path: Path) -> None:
    """The clients under Zarr and COG loads, called directly (the commands above stop at
    their first S3 request, made with boto3)."""
    account = S3Account(
        LAB_S3_PROFILE,
        tmp_path / "aws" / "aws-config",
        tmp_path / "aws" / "aws-credentials",
        SILENT_POLICY,
    )
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):  # s3fs gives up with the last timeout
        s3_filesystem(account, asynchronous=False).cat_file("bucket/key")
    zip_fs = AsyncZipFileSystem("bucket/store.zip", fs=s3_filesystem(account, asynchronous=False))
    with pytest.raises(ReadTimeoutError):
        zip_fs.find("")
    with pytest.raises(RasterioError), rasterio.Env(**s3_gdal_options(account)):
        rasterio.open("/vsis3/bucket/file.tif")
    # each call within the policy's worst case, with slack for a loaded CI machine (without
    # the deadlines botocore alone waits 60 s a read)
    assert time.monotonic() - started < 3 * (SILENT_POLICY.worst_case + SLACK)


def test_obstore_and_tensorstore_have_the_deadlines(silent: SilentEndpoint, tmp_path: Path) -> None:
    """In a fresh process, as a command is: tensorstore reads its deadlines from the
    environment once per process (without those an earlier test's reads left there)."""
    keys = ["zarr@obstore", "zarr@tensorstore", "zipzarr@tensorstore"]
    done = subprocess.run(
        [sys.executable, "-c", READERS_AGAINST_SILENT_S3, str(tmp_path / "aws"), LAB_S3_PROFILE,
         str(SILENT_TIMEOUT), str(SILENT_ATTEMPTS), *keys],
        capture_output=True, text=True, timeout=len(keys) * (SILENT_POLICY.worst_case + SLACK),
        env={k: v for k, v in os.environ.items() if not k.startswith("TENSORSTORE_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["key"] for o in outcomes] == keys
    for outcome in outcomes:
        assert outcome["error"] and outcome["error"].startswith("s3://bucket/"), outcome
        assert "\n" not in outcome["error"]
        assert outcome["seconds"] < SILENT_POLICY.worst_case + SLACK, outcome


READERS_AGAINST_SILENT_S3 = """
import json, sys, time
from pathlib import Path
from sentinel2_l1c import formats
from sentinel2_l1c.errors import RemoteError
from sentinel2_l1c.loaders.base import Catalogue
from sentinel2_l1c.storage.retry import RetryPolicy
from sentinel2_l1c.storage.s3_account import S3Account
from sentinel2_l1c.storage.places import BucketPlace

aws, profile, timeout, attempts = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
policy = RetryPolicy(attempts=attempts, connect_timeout=timeout, read_timeout=timeout)
account = S3Account(profile, aws / "aws-config", aws / "aws-credentials", policy)
for key in sys.argv[5:]:
    variant = formats.variant(key)
    place = BucketPlace(account, "bucket", "store.zip" if variant.fmt.is_archive else "")
    started = time.monotonic()
    try:
        variant.reader.open(place, Catalogue("35VLH", 2024, ()), "publish_s3").close()
        error = None
    except RemoteError as err:
        error = str(err)
    print(json.dumps({"key": key, "seconds": time.monotonic() - started, "error": error}))
"""
