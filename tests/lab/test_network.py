"""Network profiles: parsing, and the lab proxy really delays, limits and passes bytes unchanged."""

from __future__ import annotations

import argparse
import hashlib
import http.client
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.lab.network import NetworkProfile
from sentinel2_l1c.lab.proxy import LabProxy, ProxyProcess
from sentinel2_l1c.lab.serve import main as serve_main
from sentinel2_l1c.storage.clients import s3_client

MB = 1_000_000


def test_profiles_parse_by_name_parameters_and_overrides() -> None:
    assert network.parse("allas") == network.PROFILES["allas"]
    custom = network.parse("latency_ms=30,mbps=12.5,connections=3")
    assert (custom.latency_ms, custom.mbps, custom.connections, custom.total_mbps) == (
        30, 12.5, 3, None,
    )  # fmt: skip
    changed = network.parse("cdse,latency_ms=80")
    assert (changed.name, changed.latency_ms, changed.connections) == ("cdse*", 80, 4)
    assert not network.parse("loopback").shaped
    assert (
        network.parse(network.PROFILES["allas"].parameters())
        .describe()
        .endswith(network.PROFILES["allas"].describe().partition(":")[2])
    )


@pytest.mark.parametrize(
    "text, says",
    [
        ("nowhere", "unknown network profile 'nowhere'"),
        ("latency_ms=fast", "latency_ms needs a number"),
        ("mbps=0", "mbps must be positive"),
        ("allas,colour=red", "unknown parameter 'colour'"),
        ("", "empty network profile"),
    ],
)
def test_bad_profiles_are_one_clear_error(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        network.parse(text)


def test_serve_refuses_an_unknown_profile_in_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as ended:
        serve_main(["--network", "moon", "--", "true"])
    assert ended.value.code == 2
    assert "unknown network profile 'moon'" in capsys.readouterr().err


def test_drive_option_is_a_profile_or_a_folder_and_says_both() -> None:
    assert network.drive_option(network.FOLDER) is None
    assert network.drive_option("lustre") == network.PROFILES["lustre"]
    with pytest.raises(argparse.ArgumentTypeError, match="'folder' for a plain folder"):
        network.drive_option("scratch")


@pytest.fixture()
def upstream(tmp_path: Path):
    """A plain HTTP file server (the stand-in for SeaweedFS) with 4 MB of random bytes."""
    data = np.random.default_rng(1).integers(0, 256, 4 * MB, dtype=np.uint8).tobytes()
    (tmp_path / "blob").write_bytes(data)
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hashlib.sha256(data).hexdigest()
    server.shutdown()
    server.server_close()


def fetch(endpoint: str) -> tuple[float, str]:
    begin = time.perf_counter()
    with urllib.request.urlopen(f"{endpoint}/blob", timeout=30) as answer:
        body = answer.read()
    return time.perf_counter() - begin, hashlib.sha256(body).hexdigest()


@pytest.mark.lab
def test_latency_delays_every_request_and_bytes_pass_unchanged(upstream) -> None:
    port, digest = upstream
    with LabProxy(port, every=None, network=NetworkProfile(latency_ms=150)) as proxy:
        for _ in range(2):
            seconds, through = fetch(proxy.endpoint)
            assert seconds >= 0.15
            assert through == digest
    with LabProxy(port, every=None) as plain:
        assert fetch(plain.endpoint)[1] == digest


@pytest.mark.lab
def test_bandwidth_of_one_connection_and_of_all(upstream) -> None:
    port, digest = upstream
    with LabProxy(port, every=None, network=NetworkProfile(mbps=10)) as proxy:
        seconds, through = fetch(proxy.endpoint)
    assert seconds >= 4 * MB / (10 * MB) and through == digest
    shared = NetworkProfile(mbps=1000, total_mbps=20)
    with LabProxy(port, every=None, network=shared) as proxy, ThreadPoolExecutor(3) as pool:
        begin = time.perf_counter()
        answers = list(pool.map(lambda _: fetch(proxy.endpoint), range(3)))
        together = time.perf_counter() - begin
    assert together >= 3 * 4 * MB / (20 * MB)
    assert {digest} == {through for _, through in answers}


@pytest.mark.lab
def test_connection_limit_makes_requests_wait_their_turn(upstream) -> None:
    port, _ = upstream
    limited = NetworkProfile(latency_ms=200, connections=2)
    with LabProxy(port, every=None, network=limited) as proxy, ThreadPoolExecutor(4) as pool:
        begin = time.perf_counter()
        list(pool.map(lambda _: fetch(proxy.endpoint), range(4)))
        limited_seconds = time.perf_counter() - begin
    assert limited_seconds >= 2 * 0.2  # two rounds of two
    with LabProxy(port, every=None, network=NetworkProfile(latency_ms=200)) as proxy:
        with ThreadPoolExecutor(4) as pool:
            begin = time.perf_counter()
            list(pool.map(lambda _: fetch(proxy.endpoint), range(4)))
            free_seconds = time.perf_counter() - begin
    assert free_seconds < limited_seconds


@pytest.mark.lab
def test_proxy_process_forwards_until_stopped(upstream) -> None:
    port, digest = upstream
    with ProxyProcess(port, NetworkProfile(latency_ms=100)) as proxy:
        seconds, through = fetch(proxy.endpoint)
        process = proxy.process
    assert seconds >= 0.1 and through == digest
    assert process is not None and process.poll() is not None  # stopped


@pytest.mark.lab
def test_delay_proxy_delays_each_request_but_overlaps_them(upstream) -> None:
    """The network drive's metadata path: raw TCP, every block the client sends late by
    metadata_ms, requests in flight together not one after another."""
    port, digest = upstream
    with ProxyProcess(port, NetworkProfile(metadata_ms=300), tcp=True) as proxy:
        seconds, through = fetch(proxy.endpoint)
        assert seconds >= 0.3 and through == digest
        with ThreadPoolExecutor(4) as pool:
            begin = time.perf_counter()
            assert all(r[1] == digest for r in pool.map(lambda _: fetch(proxy.endpoint), range(4)))
            assert time.perf_counter() - begin < 4 * 0.3  # one after another: ≥ 1.2 s


@pytest.mark.lab
def test_lab_storage_behind_a_profile_and_recorded(tmp_path: Path) -> None:
    """The lab's S3 profile reaches SeaweedFS through the shaping proxy, CDSE's goes direct,
    and locations carry both profiles for the results' environment."""
    slow = NetworkProfile("slow", latency_ms=120)
    (tmp_path / "eodata").mkdir()  # an empty archive: only the endpoints matter here
    with LocalCdse(tmp_path, tmp_path / "eodata", network=slow) as cdse:
        locations = cdse.locations(lab_locations(tmp_path))
        assert locations.network == {
            "s3": slow.describe(), "cdse": "loopback: unshaped", "drive": "folder"
        }  # fmt: skip
        assert locations.s3_account.endpoint_url != cdse.store.endpoint
        assert locations.cdse_account.endpoint_url == cdse.store.endpoint
        client = s3_client(locations.s3_account)
        begin = time.perf_counter()
        client.list_buckets()
        assert time.perf_counter() - begin >= 0.12


class CountingHandler(SimpleHTTPRequestHandler):
    """HTTP/1.1 with keep-alive that drops a connection idle for 0.3 s, as stores do."""

    protocol_version = "HTTP/1.1"
    timeout = 0.3
    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.mark.lab
def test_proxy_keeps_one_upstream_connection_per_client_connection(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(b"x" * 1000)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(CountingHandler, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with LabProxy(server.server_address[1], every=None) as proxy:
            client = http.client.HTTPConnection("127.0.0.1", int(proxy.endpoint.rsplit(":", 1)[1]))
            for _ in range(3):
                client.request("GET", "/blob")
                assert client.getresponse().read() == b"x" * 1000
            assert CountingHandler.connections == 1  # one upstream for three requests
            time.sleep(0.6)  # the store has closed the idle connection: reopened, not an error
            client.request("GET", "/blob")
            answer = client.getresponse()
            assert (answer.status, answer.read()) == (200, b"x" * 1000)
            assert CountingHandler.connections == 2
            client.close()
    finally:
        server.shutdown()
        server.server_close()
