"""A small misbehaving HTTP server on 127.0.0.1 for the hostile-network tests.

Modes (per path prefix, default for every path):

* ``trickle_body``: headers at once, then one body byte every ``interval`` s, forever;
* ``trickle_headers``: the status line, then one header byte every ``interval`` s;
* ``silent``: read the request and never answer;
* ``no_read``: read the request's headers, never its body, never answer;
* ``bad_gzip``: ``Content-Encoding: gzip`` on a body that is not gzip (``status`` given);
* ``huge``: a 200 whose body is ``size`` bytes, sent as fast as the client reads;
* ``ok``: a well-formed ``200 {"status": 1}``; the events of a capture are recorded;
* ``nested``: a 200 whose JSON body (``{"flags": [[[...]]], "results": ...}``) is nested
  too deep for Python's parser (``RecursionError``, not ``ValueError``).
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HostileServer:
    def __init__(
        self,
        mode: str,
        *,
        interval: float = 0.3,
        status: int = 200,
        size: int = 0,
        paths: Mapping[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.paths = dict(paths or {})  # path prefix -> mode, overriding ``mode``
        self.interval = interval
        self.status = status
        self.size = size
        self.stop_event = threading.Event()
        self.hits: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def mode_for(self, path: str) -> str:
        for prefix, mode in self.paths.items():
            if path.startswith(prefix):
                return mode
        return self.mode

    def hit(self, path: str) -> None:
        with self._lock:
            self.hits.append(path)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self._server.shutdown()
        self._server.server_close()


def _handler(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            if server.mode_for(self.path) == "no_read":
                server.hit(self.path)
                server.stop_event.wait()
                self.close_connection = True
                return
            length = int(self.headers.get("Content-Length") or 0)
            self.body = self.rfile.read(length) if length else b""
            self._answer()

        def _answer(self) -> None:
            server.hit(self.path)
            mode = server.mode_for(self.path)
            try:
                getattr(self, "_" + mode)()
            except OSError:
                pass  # the client gave up: that is the point
            self.close_connection = True

        def _trickle(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            while not server.stop_event.wait(server.interval):
                self.wfile.write(b"x")
                self.wfile.flush()

        def _trickle_body(self) -> None:
            self._trickle(
                f"HTTP/1.1 {server.status} OK\r\nContent-Type: application/json\r\n"
                "Content-Length: 10000000\r\n\r\n".encode()
            )

        def _trickle_headers(self) -> None:
            self._trickle(f"HTTP/1.1 {server.status} OK\r\nX-Slow: ".encode())

        def _silent(self) -> None:
            server.stop_event.wait()

        def _bad_gzip(self) -> None:
            body = b'{"status": 1, "flags": {}} -- certainly not gzip'
            self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _ok(self) -> None:
            body = getattr(self, "body", b"")
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path.startswith("/batch"):
                with server._lock:
                    server.events.extend(json.loads(body)["batch"])
            reply = b'{"status": 1}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def _nested(self) -> None:
            deep = b"[" * 100_000 + b"]" * 100_000
            body = b'{"flags": ' + deep + b', "results": ' + deep + b"}"
            self.send_response(200)
            self.send_header("Connection", "close")  # the next request: a new connection
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _huge(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(server.size))
            self.end_headers()
            chunk = b" " * 65536
            left = server.size
            while left > 0 and not server.stop_event.is_set():
                self.wfile.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)

    return Handler
