"""A minimal ingestion sink for throughput runs, in its own process.

It answers 200 to every POST after reading (and, when gzip'd, decompressing) the body,
and counts what arrived with a counting function run in the sink's process (so neither
parsing nor the GIL of the measured process limits the rate). ``Sink`` counts events by
their ``"uuid":`` keys; ``_otlp_sink.OtlpSink`` counts OTLP spans and log records.
"""

from __future__ import annotations

import multiprocessing
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (path, decoded body, content type) -> how many items arrived; a module-level function
# (the sink's process is spawned, so it is pickled by name).
Counter = Callable[[str, bytes, str], int]


def count_events(path: str, body: bytes, content_type: str) -> int:
    return body.count(b'"uuid":')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffer the answer so headers and body leave in one segment (no Nagle stall).
    wbufsize = 64 * 1024
    counter: multiprocessing.sharedctypes.Synchronized  # type: ignore[name-defined]
    count: Counter
    reply: bytes

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if body[:2] == b"\x1f\x8b":
            body = zlib.decompress(body, 31)
        content_type = self.headers.get("Content-Type") or ""
        count = type(self).count(self.path, body, content_type)
        with self.counter.get_lock():
            self.counter.value += count
        json = "protobuf" not in content_type
        reply = self.reply if json else b""
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if json else "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self) -> None:
        """The count so far, for a reader in another process."""
        data = str(self.counter.value).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve(port_out: multiprocessing.Queue, counter: object, count: Counter, reply: bytes) -> None:
    _Handler.counter = counter  # type: ignore[assignment]
    _Handler.count = count  # type: ignore[assignment]
    _Handler.reply = reply
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


class Sink:
    """Start with ``with Sink() as sink``; ``sink.url``, ``sink.count``."""

    count_items: Counter = staticmethod(count_events)  # type: ignore[assignment]
    reply = b'{"status": 1}'

    def __enter__(self) -> Sink:
        ctx = multiprocessing.get_context("spawn")
        self._counter = ctx.Value("q", 0)
        ports = ctx.Queue()
        args = (ports, self._counter, type(self).count_items, self.reply)
        self._process = ctx.Process(target=_serve, args=args, daemon=True)
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
