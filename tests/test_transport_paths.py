"""Our own HTTP client sends through its transport directly (issue #11, delivery speed):
what ``httpx.Client.send`` did per request must still happen, and a proxy from the
environment must still be used. Each request's head leaves with its body in one write."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import pytest

from posthog_otel import Client
from posthog_otel.export import _transport

from .conftest import API_KEY


class _Recorder:
    """Answers 200 to everything and records each request's line and headers; sets a
    cookie on the first answer when ``cookie`` is given. Works as a plain HTTP proxy too
    (it answers absolute-form requests itself)."""

    def __init__(self, cookie: str | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.seen = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                first = not recorder.requests
                recorder.requests.append((self.path, headers))
                self.send_response(200)
                if cookie is not None and first:
                    self.send_header("Set-Cookie", f"{cookie}; Path=/")
                self.send_header("Content-Length", "13")
                self.end_headers()
                self.wfile.write(b'{"status": 1}')
                recorder.seen.set()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    yield server
    server.close()


def _send_two(host: str, **options: Any) -> None:
    client = Client(API_KEY, host=host, flush_interval=60.0, max_retries=0, **options)
    try:
        client.capture("first", "u1")
        assert client.flush(10)
        client.capture("second", "u1")
        assert client.flush(10)
    finally:
        client.close(5)


def test_a_proxy_from_the_environment_still_carries_our_requests(recorder, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", recorder.url)
    monkeypatch.setenv("http_proxy", recorder.url)
    _send_two("http://posthog.invalid")
    assert [path for path, _ in recorder.requests] == ["http://posthog.invalid/batch/"] * 2


def test_a_cookie_the_server_sets_is_sent_back_like_the_client_would():
    server = _Recorder(cookie="AWSALB=sticky")
    try:
        _send_two(server.url)
    finally:
        server.close()
    (_, first), (_, second) = server.requests
    assert "cookie" not in first
    assert second["cookie"] == "AWSALB=sticky"


def test_direct_requests_carry_the_headers_the_client_would_add(recorder):
    direct = _Recorder()
    try:
        _send_two(direct.url)
        with httpx.Client() as own:  # a user's client: every request goes through send()
            _send_two(recorder.url, http_client=own)
    finally:
        direct.close()
    ignore = {"content-length", "host"}
    for (_, ours), (_, theirs) in zip(direct.requests, recorder.requests, strict=True):
        assert {k: v for k, v in ours.items() if k not in ignore} == {
            k: v for k, v in theirs.items() if k not in ignore
        }
        assert "gzip" in ours["accept-encoding"]  # a server may compress its answers


class _Wire(httpcore.NetworkStream):
    """A connection that records what is written and read, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bytes]] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.log.append(("read", b""))
        return b"HTTP/1.1 200 OK\r\n\r\n"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.log.append(("write", buffer))

    def close(self) -> None:
        self.log.append(("close", b""))


@pytest.fixture
def our_request() -> Iterator[None]:
    """This thread is inside one of our requests (it has a deadline)."""
    _transport._deadline.at = time.monotonic() + 30
    yield
    _transport._deadline.at = None


def _stream(wire: _Wire, *, own_client: bool = True) -> Any:
    """A connection of our own client's pool (``own_client``) or of a user's client."""
    return _transport._deadline_classes()[0](wire, own_client)


def test_request_head_and_body_leave_in_one_write(our_request):
    wire = _Wire()
    stream = _stream(wire)
    stream.write(b"POST /batch/ HTTP/1.1\r\n\r\n")
    stream.write(b'{"batch":[]}')
    stream.write(b"")  # h11's end of a message with a Content-Length
    stream.read(65536)
    assert wire.log == [("write", b'POST /batch/ HTTP/1.1\r\n\r\n{"batch":[]}'), ("read", b"")]


def test_a_head_without_body_leaves_at_the_end_of_the_message_or_before_a_read(our_request):
    wire = _Wire()
    stream = _stream(wire)
    stream.write(b"GET /flags/definitions HTTP/1.1\r\n\r\n")
    stream.write(b"")
    assert wire.log == [("write", b"GET /flags/definitions HTTP/1.1\r\n\r\n")]
    stream.write(b"GET / HTTP/1.1\r\n\r\n")
    stream.read(65536)
    assert wire.log[1:] == [("write", b"GET / HTTP/1.1\r\n\r\n"), ("read", b"")]


def test_a_large_body_still_leaves_in_pieces_after_the_head(our_request):
    wire = _Wire()
    stream = _stream(wire)
    stream.write(b"HEAD\r\n")
    stream.write(b"x" * (200 * 1024))
    writes = [data for kind, data in wire.log if kind == "write"]
    assert b"".join(writes) == b"HEAD\r\n" + b"x" * (200 * 1024)
    assert max(len(w) for w in writes) <= _transport._WRITE_PIECE


def test_writes_of_requests_that_are_not_ours_pass_straight_through():
    # A user's own requests through their client (the backend wraps its pools): no
    # deadline of ours on the thread, so nothing is held back (a streamed upload's chunk
    # must not wait for the next one).
    assert _transport._deadline.at is None
    wire = _Wire()
    stream = _stream(wire)
    stream.write(b"POST /upload HTTP/1.1\r\n\r\n")
    assert wire.log == [("write", b"POST /upload HTTP/1.1\r\n\r\n")]


def test_a_users_client_writes_our_requests_as_httpcore_does(our_request):
    # A user's client may speak HTTP/2, where threads share one connection: nothing is
    # held back there, even for our requests.
    wire = _Wire()
    stream = _stream(wire, own_client=False)
    stream.write(b"POST /batch/ HTTP/1.1\r\n\r\n")
    stream.write(b"{}")
    assert wire.log == [("write", b"POST /batch/ HTTP/1.1\r\n\r\n"), ("write", b"{}")]
