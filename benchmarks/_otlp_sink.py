"""An OTLP ingestion sink for the traces and logs benchmarks, in its own process.

It answers 200 to every POST after reading (and, when gzip'd, decompressing) the body
and counts what arrived: for OTLP/JSON (ours) the ``"spanId":`` / ``"timeUnixNano":``
keys of spans and log records, for OTLP/protobuf (OpenTelemetry's exporters) the
decoded request's spans and records. The parsing runs in the sink's process, so it
costs the measured process nothing.
"""

from __future__ import annotations

import multiprocessing
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _count(path: str, body: bytes, content_type: str) -> int:
    if "json" in content_type:
        key = b'"spanId":' if "traces" in path else b'"observedTimeUnixNano":'
        return body.count(key)
    if "traces" in path:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        traces = ExportTraceServiceRequest.FromString(body)
        return sum(
            len(scope.spans) for resource in traces.resource_spans for scope in resource.scope_spans
        )
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    logs = ExportLogsServiceRequest.FromString(body)
    return sum(
        len(scope.log_records) for resource in logs.resource_logs for scope in resource.scope_logs
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    counter: multiprocessing.sharedctypes.Synchronized  # type: ignore[name-defined]

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip" or body[:2] == b"\x1f\x8b":
            body = zlib.decompress(body, 31)
        content_type = self.headers.get("Content-Type") or ""
        count = _count(self.path, body, content_type)
        with self.counter.get_lock():
            self.counter.value += count
        json = "json" in content_type
        reply = b"{}" if json else b""
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


def _serve(port_out: multiprocessing.Queue, counter: object) -> None:
    _Handler.counter = counter  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    port_out.put(server.server_address[1])
    server.serve_forever()


class OtlpSink:
    """Start with ``with OtlpSink() as sink``; ``sink.url``, ``sink.count``."""

    def __enter__(self) -> OtlpSink:
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
