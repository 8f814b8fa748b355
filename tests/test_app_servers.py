"""Real app servers (issue #10): each server runs as a subprocess with an app from
``tests/apps``, the fake PostHog runs in a process of its own, every server gets 100
requests with identity headers and is then stopped with SIGTERM; every event must arrive
exactly once, with the distinct id of its request.

Run alone with ``pytest -m app_servers``. The servers of one test start and run in
parallel to keep the wall time down.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import API_KEY

pytest.importorskip("uvicorn")
pytest.importorskip("gunicorn")
pytest.importorskip("starlette")

pytestmark = [
    pytest.mark.app_servers,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGTERM"),
]

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 100
WAIT = 60.0  # generous: two shared cores start many interpreters at once


class FakeProcess:
    """``tests/apps/fake_posthog.py`` in its own process; ``events()`` asks it what it got."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.apps.fake_posthog"],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        self._lock = threading.Lock()

    def events(self) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self._lock:
            self.proc.stdin.write("events\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


class Server:
    """One server subprocess; ready once its output showed ``marker`` ``count`` times."""

    def __init__(self, name: str, argv: list[str], marker: str, count: int = 1, **env: str):
        self.name = name
        self.port = _free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = env
        self.marker = marker
        self.count = count
        self.output: list[str] = []
        self.ready = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.pids: set[str] = set()

    def start(self, fake: FakeProcess) -> None:
        env = _env(POSTHOG_API_KEY=API_KEY, POSTHOG_HOST=fake.url, SCENARIO=self.name, **self.env)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        seen = 0
        for line in self.proc.stdout:
            self.output.append(line)
            if self.marker in line:
                seen += 1
                if seen >= self.count:
                    self.ready.set()
        self.ready.set()  # ended: let the waiter see it

    def run(self) -> set[str]:
        """Wait until ready, send the requests, stop with SIGTERM; the pids that answered."""
        assert self.proc is not None
        assert self.ready.wait(WAIT) and self.proc.poll() is None, self.log()
        pids = self.pids = _drive(self.name, self.port)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not stop on SIGTERM\n{self.log()}")
        return pids

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return f"--- {self.name} (answered from {sorted(self.pids)}):\n" + "".join(
            self.output[-60:]
        )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTHOG_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _drive(name: str, port: int) -> set[str]:
    """``REQUESTS`` requests, 8 at a time, each with its own distinct id."""

    def one(i: int) -> str:
        headers = {"X-POSTHOG-DISTINCT-ID": f"{name}-{i}", "Connection": "close"}
        response = httpx.get(f"http://127.0.0.1:{port}/", headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.text

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(one, range(REQUESTS)))


def _exactly_once(
    events: list[dict[str, Any]], name: str, expected: list[str], log: str = ""
) -> None:
    mine = [e for e in events if str(e.get("distinct_id", "")).startswith(name + "-")]
    ids = Counter(e["distinct_id"] for e in mine)
    missing = sorted(set(expected) - set(ids))
    duplicated = sorted(i for i, n in ids.items() if n > 1)
    unexpected = sorted(set(ids) - set(expected))
    assert not (missing or duplicated or unexpected), (
        f"{name}: {len(missing)} missing {missing[:5]}, duplicated {duplicated[:5]}, "
        f"unexpected {unexpected[:5]}; pids that sent: {Counter(_pid(e) for e in mine)}\n{log}"
    )
    assert len({e["uuid"] for e in mine}) == len(mine)


def _pid(event: dict[str, Any]) -> object:
    return event.get("properties", {}).get("pid")


def _run_all(fake: FakeProcess, servers: list[Server]) -> list[dict[str, Any]]:
    """Start every server, drive and stop them in parallel; the events the fake got."""
    try:
        for server in servers:
            server.start(fake)
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(Server.run, servers))
    finally:
        for server in servers:
            server.kill()
    return fake.events()


def _requests(name: str) -> list[str]:
    return [f"{name}-{i}" for i in range(REQUESTS)]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    process = FakeProcess()
    try:
        yield process
    finally:
        process.stop()


def test_uvicorn_with_the_middleware_wrapped_or_added_and_after_capturing(fake):
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}"]
    ready = "Uvicorn running on"
    servers = [
        Server("uv-wrap", [*uvicorn, "tests.apps.asgi_app:app"], ready, APP_MIDDLEWARE="wrap"),
        Server(
            "uv-added",
            [*uvicorn, "tests.apps.asgi_app:app"],
            ready,
            APP_MIDDLEWARE="add_middleware",
        ),
        # No middleware, no lifespan: the SIGTERM handler that uvicorn restores flushes.
        Server("uv-run", [sys.executable, "-m", "tests.apps.uvicorn_main", "{port}"], ready),
    ]
    events = _run_all(fake, servers)
    for server in servers[:2]:  # uvicorn re-raised SIGTERM after its graceful shutdown
        assert server.proc is not None and server.proc.returncode == -signal.SIGTERM
    _exactly_once(events, "uv-wrap", _requests("uv-wrap"))
    _exactly_once(events, "uv-added", _requests("uv-added"))
    _exactly_once(events, "uv-run", [*_requests("uv-run"), "uv-run-boot"])


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_preload_with_a_capture_in_the_master_before_forking(fake, worker):
    """The race is intermittent: three servers at once, each forking four workers while
    the master's flush thread sends."""
    names = [f"gunicorn-{worker}-{run}" for run in range(3)]
    servers = [
        Server(
            name,
            [
                *(sys.executable, "-m", "gunicorn", "--preload", "-w", "4", "-k", worker),
                # (more than one thread would turn the sync worker into gthread)
                *(("--threads", "4") if worker == "gthread" else ()),
                *("-b", "127.0.0.1:{port}", "--graceful-timeout", "20"),
                "tests.apps.wsgi_app:app",
            ],
            "Booting worker",
            count=4,
        )
        for name in names
    ]
    events = _run_all(fake, servers)
    for server in servers:
        name = server.name
        assert f"Using worker: {worker}" in "".join(server.output)
        _exactly_once(events, name, [*_requests(name), f"{name}-master"], server.log())


def test_gunicorn_with_uvicorn_workers(fake):
    server = Server(
        "gunicorn-uvicorn",
        [
            *(sys.executable, "-m", "gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker"),
            *("-b", "127.0.0.1:{port}", "--graceful-timeout", "20", "tests.apps.asgi_app:app"),
        ],
        "Application startup complete",
        count=2,
        APP_MIDDLEWARE="wrap",
    )
    events = _run_all(fake, [server])
    _exactly_once(events, "gunicorn-uvicorn", _requests("gunicorn-uvicorn"))


def test_multiprocessing_pool_children_that_never_flush(fake):
    """Pool children end with ``os._exit`` (no atexit): after ``close()``/``join()``
    through multiprocessing's finalizers, after ``terminate()`` through SIGTERM."""
    procs = []
    try:
        for mode in ("close", "terminate"):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.apps.pool_job", mode, str(REQUESTS)],
                    cwd=ROOT,
                    env=_env(
                        POSTHOG_API_KEY=API_KEY, POSTHOG_HOST=fake.url, SCENARIO=f"pool-{mode}"
                    ),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        outputs = [proc.communicate(timeout=WAIT)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output.decode()
    events = fake.events()
    _exactly_once(events, "pool-close", _requests("pool-close"))
    _exactly_once(events, "pool-terminate", _requests("pool-terminate"))
