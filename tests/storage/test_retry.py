"""remote: which failures are retried, how often, and the one clear error at the end."""

from __future__ import annotations

import botocore.exceptions
import pytest
import requests
from pystac_client.exceptions import APIError

from sentinel2_l1c.errors import RemoteError
from sentinel2_l1c.storage.retry import RetryPolicy, call_with_retries, describe, is_transient

FAST = RetryPolicy(attempts=3, first_wait=0.001, max_wait=0.01)


def client_error(status: int, code: str) -> botocore.exceptions.ClientError:
    response = {
        "Error": {"Code": code, "Message": "x"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, "GetObject")


@pytest.mark.parametrize(
    "error,transient",
    [
        (client_error(503, "ServiceUnavailable"), True),
        (client_error(500, "InternalError"), True),
        (client_error(400, "SlowDown"), True),
        (client_error(429, "TooManyRequests"), True),
        (client_error(403, "AccessDenied"), False),
        (client_error(404, "NoSuchKey"), False),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), True),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), True),
        (ConnectionResetError(), True),
        (requests.ConnectionError(), True),
        (ValueError("bug"), False),
    ],
)
def test_classification(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_wrapped_stac_errors_count_by_cause() -> None:
    try:
        try:
            raise requests.ConnectionError("refused")
        except requests.ConnectionError as inner:
            raise APIError("request failed") from inner
    except APIError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(APIError("bad filter"))


def test_recovers_from_transient_failures() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise client_error(503, "ServiceUnavailable")
        return "ok"

    assert call_with_retries("GET s3://b/k", flaky, FAST) == "ok"
    assert len(calls) == 3


def test_gives_up_with_one_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    def down() -> None:
        raise client_error(503, "ServiceUnavailable")

    with pytest.raises(RemoteError) as caught:
        call_with_retries("GET s3://b/k", down, FAST)
    assert (
        str(caught.value) == "GET s3://b/k: gave up after 3 attempts (HTTP 503 ServiceUnavailable)"
    )
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and retries[0].startswith(
        "GET s3://b/k: HTTP 503 ServiceUnavailable, retry 1 of 2"
    )


def test_permanent_errors_are_not_retried() -> None:
    """A refusal becomes one line naming the call and a hint; other errors pass through."""
    calls = []

    def fail(status: int, code: str) -> None:
        calls.append(1)
        raise client_error(status, code)

    with pytest.raises(RemoteError) as refused:
        call_with_retries("GET s3://b/k", lambda: fail(403, "AccessDenied"), FAST)
    assert str(refused.value) == (
        "GET s3://b/k: refused (HTTP 403 AccessDenied): the profile may not do this"
    )
    with pytest.raises(RemoteError, match="the profile's secret key is not accepted"):
        call_with_retries("GET s3://b/k", lambda: fail(403, "SignatureDoesNotMatch"), FAST)
    with pytest.raises(botocore.exceptions.ClientError):  # callers handle a missing object
        call_with_retries("GET s3://b/k", lambda: fail(404, "NoSuchKey"), FAST)
    assert len(calls) == 3
    assert describe(client_error(403, "AccessDenied")) == "HTTP 403 AccessDenied"
    assert describe(client_error(403, "403")) == "HTTP 403"
