"""Real app servers (issue #10): FastAPI + FastAPIInstrumentor under uvicorn, Django
(``LOGGING`` by class path) and Flask under gunicorn, and zero-code
``opentelemetry-instrument`` for all three. Each server runs as a subprocess on
127.0.0.1, gets 100 requests with identity headers (and, under zero-code, W3C baggage
``posthog.distinct_id``), and is then stopped; every event must arrive exactly once with
the request's distinct id and, for traced requests, the request's ``$trace_id``.

Run alone with ``pytest -m app_servers``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from posthog_otel.testing import FakePostHog

from .conftest import API_KEY

pytestmark = pytest.mark.app_servers

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 100
NO_TRACE = "0" * 32
INSTRUMENT_CLI = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
ZERO_CODE_ENV = {
    "OTEL_TRACES_EXPORTER": "posthog",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """What the test sent: per request, the distinct id and the trace id it answered."""

    base: str
    sent: dict[int, str] = field(default_factory=dict)  # i -> distinct id
    captured: set[int] = field(default_factory=set)  # requests whose handler captured
    traces: dict[str, str] = field(default_factory=dict)  # trace id -> distinct id


class _Server:
    """A server subprocess: started, awaited on /health, stopped by a signal, and
    killed in any case."""

    def __init__(self, argv: list[str], env: dict[str, str], tmp_path: Path) -> None:
        self.port = _free_port()
        self.argv = [arg.replace("{port}", str(self.port)) for arg in argv]
        self.env = env
        self.log = tmp_path / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Server:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited early:\n{self.output()}"
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling for readiness: the server gives no other signal
        raise AssertionError(f"server did not start:\n{self.output()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server did not stop on {sig.name}:\n{self.output()}") from None


def _env(server: FakePostHog, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "POSTHOG_", "DJANGO_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        POSTHOG_API_KEY=API_KEY,
        POSTHOG_HOST=server.url,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _drive(base: str, *, baggage: bool) -> Served:
    """REQUESTS requests, each with its own distinct id: in ``X-POSTHOG-DISTINCT-ID``,
    or (every other one, when ``baggage``) only in W3C baggage, without a capture."""
    served = Served(base)
    with httpx.Client(base_url=base, timeout=10) as http:
        for i in range(REQUESTS):
            if baggage and i % 2:
                distinct_id = f"bag-{i}"
                headers = {"baggage": f"posthog.distinct_id={distinct_id}"}
                params = {"i": i, "capture": 0}
            else:
                distinct_id = f"user-{i}"
                headers = {"X-POSTHOG-DISTINCT-ID": distinct_id, "X-POSTHOG-SESSION-ID": "s"}
                params = {"i": i}
                served.captured.add(i)
            answer = http.get("/hit", params=params, headers=headers)
            assert answer.status_code == 200, answer.text
            served.sent[i] = distinct_id
            trace_id = answer.json()["trace_id"]
            if trace_id != NO_TRACE:
                served.traces[trace_id] = distinct_id
    return served


def _check(server: FakePostHog, served: Served, capture_name: str, *, traced: bool) -> None:
    """Every capture and every request span exactly once, with the request's identity."""
    events = server.events
    uuids = Counter(event["uuid"] for event in events)
    assert not [uuid for uuid, seen in uuids.items() if seen > 1], "duplicated events"
    captures = [e for e in events if e["event"] == capture_name]
    by_request = Counter(e["properties"]["i"] for e in captures)
    assert sorted(by_request) == sorted(served.captured), "captures lost or extra"
    assert set(by_request.values()) == {1}, "a capture arrived twice"
    for event in captures:
        assert event["distinct_id"] == served.sent[event["properties"]["i"]]
    spans = [e for e in events if e["event"] != capture_name]
    if not traced:
        assert served.traces == {}
        assert spans == []
        return
    assert len(served.traces) == REQUESTS
    by_trace = Counter(e["properties"]["$trace_id"] for e in spans)
    assert sorted(by_trace) == sorted(served.traces), "request spans lost or extra"
    assert set(by_trace.values()) == {1}, "a request span became two events"
    for event in spans:
        assert event["distinct_id"] == served.traces[event["properties"]["$trace_id"]]
        if event["distinct_id"].startswith("user-"):  # identified by the headers
            assert event["properties"]["$session_id"] == "s"
    for event in captures:  # log records inside a traced request carry its trace id
        if "$trace_id" in event["properties"]:
            assert served.traces[event["properties"]["$trace_id"]] == event["distinct_id"]


# ------------------------------------------------------------------------------ FastAPI


def _uvicorn(target: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
    ]


@pytest.mark.parametrize("placement", ["add_middleware", "wrapped"])
def test_fastapi_instrumentor_under_uvicorn(server: FakePostHog, tmp_path: Path, placement):
    """``app.add_middleware(PostHogASGIMiddleware)`` runs inside FastAPIInstrumentor's
    middleware (it is always outermost), wrapping the app runs outside it: both give
    the request span its identity. The lifespan shutdown flushes, so SIGTERM (which
    uvicorn re-raises, skipping atexit) loses nothing."""
    with _Server(
        _uvicorn("tests.apps.fastapi_app:asgi"), _env(server, APP_MODE=placement), tmp_path
    ) as app:
        served = _drive(app.base, baggage=False)
        app.stop(signal.SIGTERM)
    _check(server, served, "api hit", traced=True)


# ------------------------------------------------------------------------ Django, Flask


def _gunicorn(target: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        "warning",
        target,
    ]


def test_django_logging_by_class_path_under_gunicorn(server: FakePostHog, tmp_path: Path):
    with _Server(_gunicorn("tests.apps.django_app:application"), _env(server), tmp_path) as app:
        served = _drive(app.base, baggage=False)
        app.stop(signal.SIGTERM)
    _check(server, served, "django hit", traced=False)


def test_flask_wsgi_middleware_under_gunicorn(server: FakePostHog, tmp_path: Path):
    with _Server(_gunicorn("tests.apps.flask_app:app"), _env(server), tmp_path) as app:
        served = _drive(app.base, baggage=False)
        app.stop(signal.SIGTERM)
    _check(server, served, "flask hit", traced=False)


# ---------------------------------------------------------------------------- zero-code


ZERO_CODE_APPS = {
    "fastapi": (
        _uvicorn("tests.apps.fastapi_app:asgi")[1:],
        {"APP_MODE": "zero-code"},
        "api hit",
    ),
    "django": (
        _gunicorn("tests.apps.django_app:application")[1:],
        {"DJANGO_SETTINGS_MODULE": "tests.apps.django_settings"},
        "django hit",
    ),
    "flask": (_gunicorn("tests.apps.flask_app:app")[1:], {"APP_TRACE": "wsgi"}, "flask hit"),
}


@pytest.mark.parametrize("framework", sorted(ZERO_CODE_APPS))
def test_zero_code_request_spans_carry_identity_and_baggage(
    server: FakePostHog, tmp_path: Path, framework: str
):
    """``opentelemetry-instrument`` with ``OTEL_TRACES_EXPORTER=posthog``: request spans
    get the middleware's identity (FastAPI: middleware inside the instrumentation;
    Django: the span starts inside the middleware; Flask: OpenTelemetry's WSGI
    middleware wraps ours) and, without identity headers, baggage ``posthog.distinct_id``.
    Stopped with SIGTERM, as Kubernetes stops a pod."""
    args, extra, capture_name = ZERO_CODE_APPS[framework]
    argv = [INSTRUMENT_CLI, sys.executable, *args]
    env = _env(server, OTEL_SERVICE_NAME=f"{framework}-zero-code", **ZERO_CODE_ENV, **extra)
    with _Server(argv, env, tmp_path) as app:
        served = _drive(app.base, baggage=True)
        app.stop(signal.SIGTERM)
    _check(server, served, capture_name, traced=True)
