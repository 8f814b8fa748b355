"""Our own HTTP client sends through its transport directly (issue #11, delivery speed):
what ``httpx.Client.send`` did per request must still happen, and a proxy from the
environment must still be used."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from posthog_otel import Client

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
