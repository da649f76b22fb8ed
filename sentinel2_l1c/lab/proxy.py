"""An HTTP proxy in front of the lab's S3 store that counts requests, can break some and
shapes the network, and an endpoint that never answers.

Counting gives requests per patch in benchmarks; breaking every n-th request (in turn, of the
chosen kinds: a connection reset in the middle of the body, an S3-style ``503
ServiceUnavailable``, or a whole body with one byte changed) proves that retries and
checksums recover; a network profile (``network.py``) makes the loopback store answer like
a remote one. Requests are forwarded unchanged (SigV4 signatures stay valid: the Host header is
the proxy's, as the client signed it). ``DelayProxy`` forwards raw TCP (the network drive's
gRPC metadata requests) and delays what the client sends by the profile's ``metadata_ms``.
``python -m sentinel2_l1c.lab.proxy`` runs either in a process of its own (``ProxyProcess``),
so its threads never compete with a benchmark's for the GIL.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.network import NetworkProfile
from sentinel2_l1c.run.processes import stop_process

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_S3_503 = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>injected fault</Message></Error>"
)


SEND_BLOCK = 64 * 1024  # bytes written between bandwidth waits
UPSTREAM_TIMEOUT = 60.0  # seconds the store may take to answer


class Shaper:
    """A network profile applied to requests: a slot among ``connections``, the latency, and
    bodies paced to the per-connection and the shared bandwidth."""

    def __init__(self, profile: NetworkProfile) -> None:
        self.profile = profile
        self.slots = threading.BoundedSemaphore(profile.connections or 1)
        self.lock = threading.Lock()
        self.shared_free_at = 0.0  # when the shared bandwidth is free again

    @contextmanager
    def request(self) -> Iterator[None]:
        """Wait for a slot, then the first-byte latency; the slot is held until the answer
        has been sent."""
        with self.slots if self.profile.connections else nullcontext():
            time.sleep(self.profile.latency_ms / 1000)
            yield

    def pace(self, data: bytes, send: Callable[[bytes], object]) -> None:
        """Send ``data`` in blocks, each no sooner than both bandwidths allow."""
        started = time.monotonic()
        for offset in range(0, len(data), SEND_BLOCK):
            block = data[offset : offset + SEND_BLOCK]
            due = started
            if self.profile.mbps:
                due += (offset + len(block)) / (self.profile.mbps * 1e6)
            if self.profile.total_mbps:
                with self.lock:
                    begin = max(time.monotonic(), self.shared_free_at)
                    self.shared_free_at = begin + len(block) / (self.profile.total_mbps * 1e6)
                    due = max(due, self.shared_free_at)
            time.sleep(max(0.0, due - time.monotonic()))
            send(block)


#: the faults a proxy can inject
FAULTS = ("reset", "503", "flip")


class LabProxy:
    """Forwards to ``upstream_port``; breaks every ``every``-th request (None: none) with the
    ``faults`` in turn, and shapes requests by ``network`` (None: loopback)."""

    def __init__(
        self,
        upstream_port: int,
        every: int | None = 5,
        network: NetworkProfile | None = None,
        port: int = 0,
        faults: tuple[str, ...] = ("reset", "503"),
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown or not faults:
            raise ConfigError(f"faults must be some of {', '.join(FAULTS)}, got {faults}")
        self.upstream_port = upstream_port
        self.every, self.kinds = every, faults
        self.shaper = Shaper(network) if network is not None and network.shaped else None
        self.requests = 0
        self.response_bytes = 0  # bodies sent back (not counting shaped-away or faulted ones)
        self.counter = itertools.count(1)
        self.faults = dict.fromkeys(FAULTS, 0)
        self.open_connections = 0
        self.peak_connections = 0  # client connections open at once, at most
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LabProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault_for(self, number: int) -> str | None:
        with self.lock:
            self.requests = max(self.requests, number)
        if self.every is None or number % self.every:
            return None
        kind = self.kinds[(number // self.every) % len(self.kinds)]
        with self.lock:
            self.faults[kind] += 1
        return kind

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once
            upstream: http.client.HTTPConnection | None = None

            def setup(self) -> None:
                super().setup()
                with proxy.lock:
                    proxy.open_connections += 1
                    proxy.peak_connections = max(proxy.peak_connections, proxy.open_connections)

            def _forward(self) -> None:
                shaper = proxy.shaper
                with shaper.request() if shaper else nullcontext():
                    self._answer(shaper)

            def _answer(self, shaper: Shaper | None) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if body is not None and len(body) < length:
                    self.close_connection = True  # the client went away mid-body: as a
                    return  # network would, the store sees nothing of it
                if body and shaper:
                    shaper.pace(body, lambda block: None)  # the upload takes its time too
                fault = proxy._fault_for(next(proxy.counter))
                if fault == "503":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_S3_503)))
                    self.end_headers()
                    self.wfile.write(_S3_503)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                response, data = self._ask_upstream(headers, body)
                self.send_response(response.status)
                head = self.command == "HEAD"  # keeps the upstream Content-Length, sends no body
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and (head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "flip" and len(data) > 1 and not head:  # whole, but not the same
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
                if fault == "reset" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                with proxy.lock:
                    proxy.response_bytes += 0 if head else len(data)
                if shaper:
                    shaper.pace(data, self.wfile.write)
                else:
                    self.wfile.write(data)

            def _ask_upstream(
                self, headers: dict[str, str], body: bytes | None
            ) -> tuple[http.client.HTTPResponse, bytes]:
                """On this client connection's own upstream connection, kept open as the
                client keeps its own (one per request cost SeaweedFS and the proxy a third
                more CPU, on the cores the benchmark measures); reopened once if the store
                closed it while idle."""
                reused = self.upstream is not None
                if self.upstream is None:
                    self.upstream = http.client.HTTPConnection(
                        "127.0.0.1", proxy.upstream_port, timeout=UPSTREAM_TIMEOUT
                    )
                try:
                    self.upstream.request(self.command, self.path, body=body, headers=headers)
                    response = self.upstream.getresponse()
                    return response, response.read()
                except ConnectionError:
                    self.upstream.close()
                    self.upstream = None
                    if not reused:
                        raise
                return self._ask_upstream(headers, body)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    if self.upstream is not None:
                        self.upstream.close()
                    with proxy.lock:
                        proxy.open_connections -= 1

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


class LoopbackServer:
    """A TCP server on 127.0.0.1 that hands each accepted connection to ``handle`` (in its
    accepting thread); started and stopped as a context manager."""

    def __init__(self, port: int = 0) -> None:
        self.socket = socket.create_server(("127.0.0.1", port), backlog=128)
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def handle(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:  # closed by __exit__
                return
            self.handle(connection)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()


class DelayProxy(LoopbackServer):
    """Forwards TCP to ``upstream_port``; each block the client sends leaves ``delay_ms``
    after it arrived (blocks are pipelined, not serialised: requests in flight overlap, as
    on a network with that round-trip time)."""

    def __init__(self, upstream_port: int, delay_ms: float, port: int = 0) -> None:
        super().__init__(port)
        self.upstream_port, self.delay = upstream_port, delay_ms / 1000

    def handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        blocks: queue.Queue[tuple[float, bytes]] = queue.Queue()
        threading.Thread(target=self._receive, args=(client, blocks), daemon=True).start()
        threading.Thread(target=self._send_due, args=(blocks, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    def _receive(self, client: socket.socket, blocks: queue.Queue[tuple[float, bytes]]) -> None:
        while data := _recv(client):
            blocks.put((time.monotonic() + self.delay, data))
        blocks.put((0.0, b""))

    @staticmethod
    def _send_due(blocks: queue.Queue[tuple[float, bytes]], upstream: socket.socket) -> None:
        while True:
            due, data = blocks.get()
            if not data:
                _close(upstream)
                return
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                upstream.sendall(data)
            except OSError:
                return


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(SEND_BLOCK)
    except OSError:
        return b""


def _pump(source: socket.socket, target: socket.socket) -> None:
    while data := _recv(source):
        try:
            target.sendall(data)
        except OSError:
            break
    _close(target)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class SilentEndpoint(LoopbackServer):
    """Accepts connections and never answers: a hung server, for testing deadlines."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[socket.socket] = []

    def handle(self, connection: socket.socket) -> None:
        self.connections.append(connection)  # held open, never read or answered

    def __exit__(self, *exc: object) -> None:
        super().__exit__()
        for connection in self.connections:
            connection.close()


class ProxyProcess:
    """A shaping ``LabProxy`` (or with ``tcp``, a ``DelayProxy`` by the profile's
    ``metadata_ms``) in a child process (``python -m sentinel2_l1c.lab.proxy``), started on a
    free port and stopped by its PID."""

    def __init__(
        self, upstream_port: int, profile: NetworkProfile, tcp: bool = False, port: int = 0
    ) -> None:
        self.upstream_port, self.profile, self.tcp, self.wanted_port = (
            upstream_port,
            profile,
            tcp,
            port,
        )
        self.process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def __enter__(self) -> ProxyProcess:
        command = [
            sys.executable, "-m", "sentinel2_l1c.lab.proxy",
            "--upstream-port", str(self.upstream_port),
            "--network", self.profile.parameters() or "latency_ms=0",
            "--port", str(self.wanted_port), *(["--tcp"] if self.tcp else []),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()  # the endpoint, once it listens
        if not line.startswith("http://"):
            self.__exit__()
            raise ConfigError(f"the lab's network proxy did not start (said {line!r})")
        self.endpoint = line
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process(self.process)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


def _end_with_parent(parent: int) -> None:
    """A parent killed without stopping its proxy (SIGKILL) must not leave it running."""
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sentinel2_l1c.lab.proxy",
        description="Serve a network-shaping proxy in front of a local port until SIGTERM; "
        "prints its endpoint first.",
    )
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--network", required=True, help="A profile or key=value,… parameters.")
    parser.add_argument(
        "--tcp", action="store_true", help="Forward raw TCP, delayed by metadata_ms."
    )
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (0: any free).")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()
    profile = network.parse(args.network)
    server = (
        DelayProxy(args.upstream_port, profile.metadata_ms, args.port)
        if args.tcp
        else LabProxy(
            args.upstream_port, every=profile.fault_every, network=profile, port=args.port
        )
    )
    with server as proxy:
        print(proxy.endpoint, flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
