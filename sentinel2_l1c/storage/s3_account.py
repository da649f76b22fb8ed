"""An S3 account: a boto3 profile (keys, region and ``endpoint_url``) and its retry policy.

Every client (``clients``) gets its keys and endpoint from here, so the same profile means the
same account everywhere. The AWS config and credentials files can be named explicitly (the
lab writes its own); otherwise boto3's lookup applies (``~/.aws``, ``AWS_CONFIG_FILE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.storage.retry import RetryPolicy


@dataclass(frozen=True)
class S3Keys:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(repr=False)
    region: str
    #: a custom endpoint (None: AWS itself)
    endpoint_url: str | None

    @property
    def plain_http(self) -> bool:
        """Whether the endpoint is spoken to without TLS (the lab's)."""
        return bool(self.endpoint_url and self.endpoint_url.startswith("http:"))


@dataclass(frozen=True)
class S3Account:
    profile: str
    config_file: Path | None = None
    credentials_file: Path | None = None
    #: deadlines and retries of every client made from it (``clients``)
    retry: RetryPolicy = RetryPolicy()

    def configure(self, session: botocore.session.Session) -> botocore.session.Session:
        if self.config_file is not None:
            session.set_config_variable("config_file", str(self.config_file))
        if self.credentials_file is not None:
            session.set_config_variable("credentials_file", str(self.credentials_file))
        session.set_config_variable("profile", self.profile)
        return session

    def boto3_session(self) -> boto3.Session:
        """A boto3 session of the profile; ConfigError if it is unknown or has no keys."""
        try:
            session = boto3.Session(botocore_session=self.configure(botocore.session.Session()))
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
        session = self.configure(botocore.session.Session())
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


def custom_endpoint(session: boto3.Session) -> str | None:
    """The session's S3 endpoint when it is not AWS itself (SeaweedFS, Allas, CDSE)."""
    endpoint = session.client("s3").meta.endpoint_url or ""
    host = urlsplit(endpoint).netloc
    return endpoint if host and "amazonaws.com" not in host else None
