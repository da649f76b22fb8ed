"""An HTTP proxy in front of the lab's S3 store that counts requests and can break some, and
an endpoint that never answers.

Counting gives requests per patch in benchmarks; breaking every n-th request (alternately an
S3-style ``503 ServiceUnavailable`` and a connection reset in the middle of the body) proves
that retries recover. Requests are forwarded unchanged (SigV4 signatures stay valid: the
Host header is the proxy's, as the client signed it).
"""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_S3_503 = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>injected fault</Message></Error>"
)


class FaultProxy:
    """Forwards to ``upstream_port``; breaks every ``every``-th request (None: none).

    ``latency`` seconds are added to each request, to emulate a remote object store.
    """

    def __init__(self, upstream_port: int, every: int | None = 5, latency: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.every = every
        self.latency = latency
        self.requests = 0
        self.counter = itertools.count(1)
        self.faults = {"503": 0, "reset": 0}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
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
        kind = "503" if (number // self.every) % 2 else "reset"
        with self.lock:
            self.faults[kind] += 1
        return kind

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if body is not None and len(body) < length:
                    self.close_connection = True  # the client went away mid-body: as a
                    return  # network would, the store sees nothing of it
                fault = proxy._fault_for(next(proxy.counter))
                if proxy.latency:
                    time.sleep(proxy.latency)
                if fault == "503":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_S3_503)))
                    self.end_headers()
                    self.wfile.write(_S3_503)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                self.send_response(response.status)
                head = self.command == "HEAD"  # keeps the upstream Content-Length, sends no body
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and (head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "reset" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


class SilentEndpoint:
    """Accepts connections and never answers: a hung server, for testing deadlines."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:  # closed by __exit__
                return
            self.connections.append(connection)  # held open, never read or answered

    def __enter__(self) -> SilentEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()
        for connection in self.connections:
            connection.close()
