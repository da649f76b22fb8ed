"""Every library's client of a local folder or an S3 account, made in this one module.

boto3, s3fs, obstore, tensorstore, icechunk, zarr-python and GDAL each take keys, endpoints,
deadlines and retries in their own way; here each gets them from the same account
(``s3_account``) and the same retry policy (``retry``), so one profile means one account and
one patience everywhere. A place (``places``) picks the client of its kind: readers ask the
place for a client and never branch on what kind of place it is.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.config
import icechunk
import s3fs
import zarr.storage
from aiobotocore.session import AioSession
from fsspec.implementations.local import LocalFileSystem
from obstore.store import LocalStore, S3Store

from sentinel2_l1c.storage.retry import RetryPolicy, is_transient
from sentinel2_l1c.storage.s3_account import S3Account

# s3fs retries its own list of errors (timeouts, cut bodies); with this it also retries what
# every other client here does (5xx answers, throttling), so one classification holds.
s3fs.core.set_custom_error_handler(is_transient)

# icechunk's own log lines (warnings such as "The LocalFileSystem storage is not safe for
# concurrent commits" on every open) would break the one-line errors of the commands, which
# report icechunk's exceptions themselves; ICECHUNK_LOG (icechunk's own variable) turns them on.
icechunk.set_logs_filter(None if "ICECHUNK_LOG" in os.environ else "off")

# --------------------------------------------------------------------------------------
# Local folders and files
# --------------------------------------------------------------------------------------


def local_zarr_store(path: Path) -> zarr.storage.LocalStore:
    return zarr.storage.LocalStore(path, read_only=True)


def local_filesystem() -> LocalFileSystem:
    return LocalFileSystem()


def local_obstore(path: Path) -> LocalStore:
    return LocalStore(path)


def local_tensorstore(path: Path, archive: bool) -> dict[str, Any]:
    """tensorstore's key-value store of a folder (``archive`` False) or a file."""
    return {"driver": "file", "path": f"{path}{'' if archive else '/'}"}


def local_icechunk(path: Path) -> icechunk.Storage:
    return icechunk.local_filesystem_storage(str(path))


# --------------------------------------------------------------------------------------
# S3 accounts
# --------------------------------------------------------------------------------------


def s3_client(account: S3Account, connections: int = 10) -> Any:  # a botocore S3 client
    """A path-style S3 client with deadlines and without botocore's own retries
    (``retry.call_with_retries`` is the one retry layer)."""
    config = botocore.config.Config(
        retries={"total_max_attempts": 1},
        max_pool_connections=max(1, connections),
        connect_timeout=account.retry.connect_timeout,
        read_timeout=account.retry.read_timeout,
        s3={"addressing_style": "path"},
    )
    return account.boto3_session().client("s3", config=config)


def s3_filesystem(account: S3Account, asynchronous: bool = True) -> s3fs.S3FileSystem:
    """A fresh (uncached) s3fs filesystem of the account, with the account's deadlines and
    its number of attempts (s3fs retries, transient errors as classified in ``retry``;
    botocore's own retries are off, so the two do not multiply).

    ``max_concurrency=1``: otherwise s3fs sends a HEAD before every whole-object GET (to
    split large objects), doubling the requests for Zarr chunks.
    """
    account.boto3_session()  # a bad profile fails here, in one line, not inside asyncio
    session = AioSession()
    account.configure(session)
    fs = s3fs.S3FileSystem(
        session=session,
        asynchronous=asynchronous,
        max_concurrency=1,
        skip_instance_cache=True,
        config_kwargs={
            "connect_timeout": account.retry.connect_timeout,
            "read_timeout": account.retry.read_timeout,
            "retries": {"total_max_attempts": 1},
        },
    )
    fs.retries = account.retry.attempts
    return fs


def s3_zarr_store(account: S3Account, bucket: str) -> zarr.storage.FsspecStore:
    """A bucket's objects as a read-only Zarr store, through s3fs (the first version's path)."""
    return zarr.storage.FsspecStore(s3_filesystem(account), read_only=True, path=bucket)


def s3_gdal_options(account: S3Account) -> dict[str, Any]:
    """``rasterio.Env`` settings for ``/vsis3/``: the account's keys and endpoint (through
    rasterio's AWSSession), path-style requests, no directory listing on open, a block
    cache for remote reads, GDAL's own retries of 5xx/429 answers, and the account's
    deadlines (``GDAL_HTTP_TIMEOUT`` bounds a whole request).

    ``GDAL_NUM_THREADS=1``: rasterio sets these options for the calling thread only, and
    JPEG 2000 tiles decoded by GDAL's worker threads would be fetched without them (curl:
    "URL rejected"), leaving those tiles as zeros without an exception. Reads run in
    parallel threads of the caller instead.
    """
    from rasterio.session import AWSSession

    retry = account.retry
    endpoint = account.keys().endpoint_url
    parts = urlsplit(endpoint or "https://")
    return {
        "session": AWSSession(account.boto3_session(), endpoint_url=parts.netloc or None),
        "AWS_HTTPS": "NO" if parts.scheme == "http" else "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".jp2,.tif",
        "VSI_CACHE": "TRUE",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MAX_RETRY": str(retry.attempts - 1),
        "GDAL_HTTP_RETRY_DELAY": str(retry.first_wait),
        "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(retry.connect_timeout))),
        "GDAL_HTTP_TIMEOUT": str(max(1, round(retry.connect_timeout + retry.read_timeout))),
        "GDAL_NUM_THREADS": "1",
    }


def s3_obstore(account: S3Account, bucket: str) -> S3Store:
    """obstore (Rust's ``object_store``) on a bucket: it skips the s3fs/aiobotocore path
    (Python request signing, an event loop per call chain), where most of a chunk read's
    overhead was."""
    keys, retry = account.keys(), account.retry
    return S3Store(
        bucket,
        access_key_id=keys.access_key_id,
        secret_access_key=keys.secret_access_key,
        region=keys.region,
        virtual_hosted_style_request=False,
        **({"session_token": keys.session_token} if keys.session_token else {}),
        **({"endpoint": keys.endpoint_url} if keys.endpoint_url else {}),
        client_options={
            "allow_http": keys.plain_http,
            "connect_timeout": timedelta(seconds=retry.connect_timeout),
            "read_timeout": timedelta(seconds=retry.read_timeout),
        },
        retry_config={
            "max_retries": retry.attempts - 1,
            "backoff": {
                "init_backoff": timedelta(seconds=retry.first_wait),
                "max_backoff": timedelta(seconds=retry.max_wait),
                "base": 2.0,
            },
            "retry_timeout": timedelta(seconds=retry.worst_case),
        },
    )


def s3_tensorstore(
    account: S3Account, bucket: str, key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """tensorstore's key-value store of ``key`` in a bucket (a prefix, or an object), and the
    context holding the account's retries."""
    keys, retry = account.keys(), account.retry
    config_file, credentials_file = account.files()
    spec = {
        "driver": "s3",
        "bucket": bucket,
        "path": key,
        "aws_region": keys.region,
        "aws_credentials": {
            "type": "profile",
            "profile": account.profile,
            "config_file": str(config_file),
            "credentials_file": str(credentials_file),
        },
        **({"endpoint": keys.endpoint_url} if keys.endpoint_url else {}),
    }
    set_tensorstore_deadlines(retry)
    context = {
        "s3_request_retries": {
            "max_retries": retry.attempts,  # tensorstore counts every attempt
            "initial_delay": f"{retry.first_wait}s",
            "max_delay": f"{retry.max_wait}s",
        }
    }
    return spec, context


def set_tensorstore_deadlines(retry: RetryPolicy) -> None:
    """tensorstore's HTTP deadlines come from the environment, read once, when its first S3
    request is made: a connection deadline, and giving up on an answer that sends nothing for
    the read timeout (under 1 byte/s). So the first policy of a process holds for all of its
    tensorstore reads (commands have one); a user's own values are kept."""
    os.environ.setdefault(
        "TENSORSTORE_CURL_CONNECT_TIMEOUT_SECONDS", str(round(retry.connect_timeout))
    )
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_TIME_SECONDS", str(round(retry.read_timeout)))
    os.environ.setdefault("TENSORSTORE_CURL_LOW_SPEED_LIMIT_BYTES", "1")


def s3_icechunk(account: S3Account, bucket: str) -> icechunk.Storage:
    """icechunk's storage of a whole bucket, with the account's keys, endpoint and deadline."""
    keys = account.keys()
    return icechunk.s3_storage(
        bucket=bucket,
        prefix=None,
        region=keys.region,
        endpoint_url=keys.endpoint_url,
        allow_http=keys.plain_http,
        access_key_id=keys.access_key_id,
        secret_access_key=keys.secret_access_key,
        session_token=keys.session_token,
        force_path_style=bool(keys.endpoint_url),
        network_stream_timeout_seconds=round(account.retry.read_timeout),
    )


def icechunk_config(retry: RetryPolicy | None) -> icechunk.RepositoryConfig:
    """A repository's settings: retries as every other client of its place has them (None:
    a local place, icechunk's defaults)."""
    config = icechunk.RepositoryConfig.default()
    if retry is not None:
        config.storage = icechunk.StorageSettings(
            retries=icechunk.StorageRetriesSettings(
                max_tries=retry.attempts,
                initial_backoff_ms=round(retry.first_wait * 1000),
                max_backoff_ms=round(retry.max_wait * 1000),
            )
        )
    return config
