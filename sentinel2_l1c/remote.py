"""Talking to remote services: one retry policy for every network call, S3 clients by profile.

Transient failures (connection resets and timeouts, HTTP 5xx, throttling) are retried with
capped exponential backoff and jitter, a log line per retry, and a bounded number of
attempts; then a RemoteError says what failed. Other errors pass through at once. botocore's
own retries are switched off so that this is the only retry layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import boto3
import botocore.config
import botocore.exceptions
import requests
import tenacity
import urllib3.exceptions
from pystac_client.exceptions import APIError

from .errors import ConfigError, RemoteError

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT_CODES = {
    "InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown", "Throttling",
    "ThrottlingException", "TooManyRequests", "RequestLimitExceeded", "BadGateway",
}  # fmt: skip
_TRANSIENT_TYPES = (
    botocore.exceptions.ConnectionError,  # includes EndpointConnectionError, ConnectionClosedError
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    attempts: int = 6
    first_wait: float = 0.5  # seconds; doubles each time, with jitter
    max_wait: float = 20.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"retry attempts must be at least 1, got {self.attempts}")


def http_status(error: BaseException) -> int | None:
    """The HTTP status of a failed S3 or STAC call, if it had one."""
    if isinstance(error, botocore.exceptions.ClientError):
        return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if isinstance(error, APIError):
        return getattr(error, "status_code", None)
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return error.response.status_code
    return None


def is_transient(error: BaseException) -> bool:
    """True for failures worth retrying: lost connections, timeouts, 5xx, throttling.

    Wrapped errors count by their cause (pystac-client wraps requests' errors in APIError).
    """
    cause = error.__cause__ or error.__context__
    if isinstance(error, APIError) and http_status(error) is None and cause is not None:
        return is_transient(cause)
    if isinstance(error, _TRANSIENT_TYPES):
        return True
    status = http_status(error)
    if status is not None and (status >= 500 or status == 429):
        return True
    if isinstance(error, botocore.exceptions.ClientError):
        return error.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return False


def describe(error: BaseException) -> str:
    """A short reason without request details (URLs may carry signatures)."""
    status = http_status(error)
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        return f"HTTP {status} {code}".strip()
    if status is not None:
        return f"HTTP {status}"
    return type(error).__name__


def call_with_retries(what: str, function: Callable[[], T], policy: RetryPolicy) -> T:
    """Run ``function``; retry transient failures; RemoteError naming ``what`` when it gives up."""

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: %s, retry %d of %d in %.1f s",
            what,
            describe(error) if error else "failed",
            state.attempt_number,
            policy.attempts - 1,
            state.next_action.sleep if state.next_action else 0.0,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential_jitter(
            multiplier=policy.first_wait, max=policy.max_wait, jitter=policy.first_wait
        ),
        stop=tenacity.stop_after_attempt(policy.attempts),
        before_sleep=log_retry,
        reraise=True,
    )
    try:
        return retrying(function)
    except Exception as error:
        if is_transient(error):
            raise RemoteError(
                f"{what}: gave up after {policy.attempts} attempts ({describe(error)})"
            ) from error
        raise


def s3_client(profile: str, connections: int = 10):  # -> botocore S3 client
    """An S3 client for boto3 ``profile`` (endpoint from its ``endpoint_url``), path-style."""
    config = botocore.config.Config(
        retries={"total_max_attempts": 1},  # call_with_retries is the retry layer
        max_pool_connections=max(1, connections),
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"},
    )
    try:
        session = boto3.Session(profile_name=profile)
        client = session.client("s3", config=config)
    except botocore.exceptions.ProfileNotFound:
        raise ConfigError(
            f"AWS profile {profile!r} not found: add [profile {profile}] with endpoint_url to "
            "~/.aws/config (or the file named by AWS_CONFIG_FILE) and its keys to "
            "~/.aws/credentials (see README)"
        ) from None
    if session.get_credentials() is None:
        raise ConfigError(
            f"AWS profile {profile!r} has no credentials: add them under [{profile}] in "
            "~/.aws/credentials (or the file named by AWS_SHARED_CREDENTIALS_FILE)"
        )
    return client
