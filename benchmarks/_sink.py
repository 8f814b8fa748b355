"""A minimal ingestion sink for throughput runs, in its own process.

It answers 200 to every POST after reading (and, when gzip'd, decompressing) the body,
and counts events by counting ``"uuid":`` occurrences, so neither JSON parsing nor the
GIL of the client's process limits the measured rate.
"""

from __future__ import annotations

import multiprocessing
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffer the answer so headers and body leave in one segment (no Nagle stall).
    wbufsize = 64 * 1024
    counter: multiprocessing.sharedctypes.Synchronized  # type: ignore[name-defined]

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if body[:2] == b"\x1f\x8b":
            body = zlib.decompress(body, 31)
        with self.counter.get_lock():
            self.counter.value += body.count(b'"uuid":')
        self.send_response(200)
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b'{"status": 1}')

    def do_GET(self) -> None:
        data = str(self.counter.value).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve(port_out: multiprocessing.Queue, counter: object) -> None:
    _Handler.counter = counter  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


class Sink:
    """Start with ``with Sink() as sink``; ``sink.url``, ``sink.count``."""

    def __enter__(self) -> Sink:
        ctx = multiprocessing.get_context("spawn")
        self._counter = ctx.Value("q", 0)
        ports = ctx.Queue()
        self._process = ctx.Process(target=_serve, args=(ports, self._counter), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{ports.get(timeout=30)}"
        return self

    @property
    def count(self) -> int:
        return int(self._counter.value)

    def reset(self) -> None:
        with self._counter.get_lock():
            self._counter.value = 0

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.join(5)
