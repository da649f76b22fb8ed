"""One retry policy for every network call: deadlines, which failures are transient, backoff.

Transient failures (connection resets and timeouts, HTTP 5xx, throttling) are retried with
capped exponential backoff and jitter, a log line per retry, and a bounded number of
attempts; then a RemoteError says what failed. Other errors pass through at once. botocore's
own retries are switched off (``clients``) so that this is the only retry layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import botocore.config
import botocore.exceptions
import requests
import tenacity
import urllib3.exceptions
from pystac_client.exceptions import APIError

from sentinel2_l1c.errors import ConfigError, RemoteError

log = logging.getLogger(__name__)
_TRANSIENT_CODES = {
    "InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown", "Throttling",
    "ThrottlingException", "TooManyRequests", "RequestLimitExceeded", "BadGateway",
}  # fmt: skip


class ChecksumMismatch(ConnectionError):
    """Delivered bytes whose checksum is not the expected one: fetched again, like a cut
    body. Its message (the two checksums) is shown as the reason."""


_TRANSIENT_TYPES = (
    botocore.exceptions.ConnectionError,  # includes EndpointConnectionError, ConnectionClosedError
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.FlexibleChecksumError,  # a body that is not what the server sent
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for an answer, and how often and how patiently to retry a transient
    failure. Every client (boto3, s3fs, GDAL, the STAC client) gets the same deadlines, so an
    endpoint that accepts connections and never answers ends a call after at most
    ``attempts × (connect_timeout + read_timeout)`` plus the waits between attempts."""

    attempts: int = 6
    first_wait: float = 0.5  # seconds; doubles each time, with jitter
    max_wait: float = 20.0
    connect_timeout: float = 10.0  # seconds to establish a connection
    read_timeout: float = 60.0  # seconds without a byte of the answer

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"retry attempts must be at least 1, got {self.attempts}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError("network timeouts must be positive")

    @property
    def worst_case(self) -> float:
        """Seconds a call to a silent endpoint can take before it gives up."""
        waits = sum(min(self.max_wait, self.first_wait * 2**n) for n in range(self.attempts - 1))
        return self.attempts * (self.connect_timeout + self.read_timeout) + waits


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
    cause = error.__cause__ or error.__context__
    if isinstance(error, APIError) and http_status(error) is None and cause is not None:
        return describe(cause)  # pystac-client wraps requests' errors
    status = http_status(error)
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        return f"HTTP {status} {code}".strip() if code != str(status) else f"HTTP {status}"
    if status is not None:
        return f"HTTP {status}"
    if isinstance(error, ChecksumMismatch):
        return str(error)
    return type(error).__name__


_REFUSAL_HINTS = {
    "SignatureDoesNotMatch": "the profile's secret key is not accepted",
    "InvalidAccessKeyId": "the profile's access key is not known there",
    "InvalidToken": "the profile's session token is not accepted",
    "ExpiredToken": "the profile's session token has expired",
    "AccessDenied": "the profile may not do this",
    "AllAccessDisabled": "the profile may not do this",
}


def refusal(error: BaseException) -> str | None:
    """Why a server refused a call (HTTP 401 or 403), with a hint; None for other errors."""
    if http_status(error) not in (401, 403):
        return None
    code = ""
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
    hint = _REFUSAL_HINTS.get(code, "check the profile's keys and rights")
    return f"refused ({describe(error)}): {hint}"


def call_with_retries[T](
    what: str,
    function: Callable[[], T],
    policy: RetryPolicy,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run ``function``; retry ``transient`` failures; RemoteError naming ``what`` when it
    gives up or the server refuses (401, 403); other errors pass through."""

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
        retry=tenacity.retry_if_exception(transient),
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
        if transient(error):
            raise RemoteError(
                f"{what}: gave up after {policy.attempts} attempts ({describe(error)})"
            ) from error
        why = refusal(error)
        if why is not None:
            raise RemoteError(f"{what}: {why}") from error
        raise
