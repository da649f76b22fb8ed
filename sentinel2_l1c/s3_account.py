"""An S3 account: a boto3 profile (keys and ``endpoint_url``), and every client made from it.

boto3, s3fs and GDAL all get their keys and endpoint from here, so the same profile means the
same account everywhere. The AWS config and credentials files can be named explicitly (the
lab writes its own); otherwise boto3's lookup applies (``~/.aws``, ``AWS_CONFIG_FILE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
import botocore.session
import s3fs
from aiobotocore.session import AioSession

from .errors import ConfigError
from .remote import RetryPolicy, is_transient

# s3fs retries its own list of errors (timeouts, cut bodies); with this it also retries what
# every other client here does (5xx answers, throttling), so one classification holds.
s3fs.core.set_custom_error_handler(is_transient)


@dataclass(frozen=True)
class S3Keys:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(repr=False)
    region: str
    #: a custom endpoint (None: AWS itself)
    endpoint_url: str | None


@dataclass(frozen=True)
class S3Account:
    profile: str
    config_file: Path | None = None
    credentials_file: Path | None = None
    #: deadlines and retries of every client made here
    retry: RetryPolicy = RetryPolicy()

    def _configure(self, session: botocore.session.Session) -> botocore.session.Session:
        if self.config_file is not None:
            session.set_config_variable("config_file", str(self.config_file))
        if self.credentials_file is not None:
            session.set_config_variable("credentials_file", str(self.credentials_file))
        session.set_config_variable("profile", self.profile)
        return session

    def boto3_session(self) -> boto3.Session:
        """A boto3 session of the profile; ConfigError if it is unknown or has no keys."""
        try:
            session = boto3.Session(botocore_session=self._configure(botocore.session.Session()))
            credentials = session.get_credentials()
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(
                f"AWS profile {self.profile!r} not found: add [profile {self.profile}] with "
                f"endpoint_url to {self.config_file or '~/.aws/config (or AWS_CONFIG_FILE)'} "
                f"and its keys to {self.credentials_file or '~/.aws/credentials'} (see README)"
            ) from None
        if credentials is None:
            raise ConfigError(
                f"AWS profile {self.profile!r} has no credentials: add them under "
                f"[{self.profile}] in {self.credentials_file or '~/.aws/credentials'}"
            )
        return session

    @property
    def endpoint_url(self) -> str | None:
        """The profile's ``endpoint_url`` (None: AWS itself)."""
        return self.boto3_session().client("s3").meta.endpoint_url

    def files(self) -> tuple[Path, Path]:
        """The AWS config and credentials files the profile is read from (as boto3 resolves
        them: given here, ``AWS_CONFIG_FILE``/``AWS_SHARED_CREDENTIALS_FILE``, ``~/.aws``)."""
        session = self._configure(botocore.session.Session())
        return (
            Path(session.get_config_variable("config_file")).expanduser(),
            Path(session.get_config_variable("credentials_file")).expanduser(),
        )

    def keys(self) -> S3Keys:
        """The profile's keys, region and endpoint, for clients that take them as values
        (obstore, tensorstore) rather than from a boto3 session."""
        session = self.boto3_session()
        frozen = session.get_credentials().get_frozen_credentials()
        return S3Keys(
            frozen.access_key,
            frozen.secret_key,
            frozen.token,
            session.region_name or "us-east-1",
            custom_endpoint(session),
        )

    def client(self, connections: int = 10) -> Any:  # a botocore S3 client
        """A path-style S3 client with deadlines and without botocore's own retries
        (``remote.call_with_retries`` is the one retry layer)."""
        config = botocore.config.Config(
            retries={"total_max_attempts": 1},
            max_pool_connections=max(1, connections),
            connect_timeout=self.retry.connect_timeout,
            read_timeout=self.retry.read_timeout,
            s3={"addressing_style": "path"},
        )
        return self.boto3_session().client("s3", config=config)

    def filesystem(self, asynchronous: bool = True) -> s3fs.S3FileSystem:
        """A fresh (uncached) s3fs filesystem of the account, with the account's deadlines and
        its number of attempts (s3fs retries, transient errors as classified in ``remote``;
        botocore's own retries are off, so the two do not multiply).

        ``max_concurrency=1``: otherwise s3fs sends a HEAD before every whole-object GET (to
        split large objects), doubling the requests for Zarr chunks.
        """
        self.boto3_session()  # a bad profile fails here, in one line, not inside asyncio
        session = AioSession()
        self._configure(session)
        fs = s3fs.S3FileSystem(
            session=session,
            asynchronous=asynchronous,
            max_concurrency=1,
            skip_instance_cache=True,
            config_kwargs={
                "connect_timeout": self.retry.connect_timeout,
                "read_timeout": self.retry.read_timeout,
                "retries": {"total_max_attempts": 1},
            },
        )
        fs.retries = self.retry.attempts
        return fs

    def gdal_options(self) -> dict[str, Any]:
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

        session = self.boto3_session()
        parts = urlsplit(custom_endpoint(session) or "https://")
        return {
            "session": AWSSession(session, endpoint_url=parts.netloc or None),
            "AWS_HTTPS": "NO" if parts.scheme == "http" else "YES",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".jp2,.tif",
            "VSI_CACHE": "TRUE",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "GDAL_HTTP_MAX_RETRY": str(self.retry.attempts - 1),
            "GDAL_HTTP_RETRY_DELAY": str(self.retry.first_wait),
            "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(self.retry.connect_timeout))),
            "GDAL_HTTP_TIMEOUT": str(
                max(1, round(self.retry.connect_timeout + self.retry.read_timeout))
            ),
            "GDAL_NUM_THREADS": "1",
        }


def custom_endpoint(session: boto3.Session) -> str | None:
    """The session's S3 endpoint when it is not AWS itself (SeaweedFS, Allas, CDSE)."""
    endpoint = session.client("s3").meta.endpoint_url or ""
    host = urlsplit(endpoint).netloc
    return endpoint if host and "amazonaws.com" not in host else None
