from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from posthog_otel import Client
from posthog_otel.testing import FakeClock, FakePostHog

API_KEY = "phc_test_key_0123456789"


@pytest.fixture
def server(posthog_server: FakePostHog) -> FakePostHog:
    """The project's own pytest plugin fixture, under a shorter name."""
    return posthog_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(server: FakePostHog) -> Iterator[Callable[..., Client]]:
    """Build clients pointed at the fake server; each is closed after the test."""
    clients: list[Client] = []

    def make(**kwargs: Any) -> Client:
        kwargs.setdefault("host", server.url)
        kwargs.setdefault("flush_interval", 60.0)
        client = Client(kwargs.pop("api_key", API_KEY), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=2)


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    return caplog


@pytest.fixture(autouse=True)
def _restore_library_logger() -> Iterator[None]:
    """``debug=True`` changes the process-wide ``posthog_otel`` logger: undo it after
    each test, so that one test's debug mode does not change what the next one logs."""
    from posthog_otel._log import debug_state

    log = logging.getLogger("posthog_otel")
    level, handlers, verbose = log.level, list(log.handlers), debug_state.verbose
    yield
    log.setLevel(level)
    log.handlers[:] = handlers
    debug_state.verbose = verbose


def started_threads(before: set[threading.Thread], name: str) -> list[threading.Thread]:
    """The threads called ``name`` started since ``before`` (``set(threading.enumerate())``
    taken earlier): how a test finds a client's flush thread, poller or flags worker
    (``posthog_otel-flush``, ``posthog_otel-flags``, ``posthog_otel-flags-worker``)
    without reaching into it."""
    return [t for t in threading.enumerate() if t.name == name and t not in before]


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakePostHog]:
    """One fake server for a module's Hypothesis tests: starting and stopping one per
    example cost most of their time. Each example begins with ``fresh(module_server)``."""
    with FakePostHog() as server:
        yield server


def fresh(server: FakePostHog) -> FakePostHog:
    """``server`` as new for the next example: no pending faults, nothing recorded."""
    server.clear_faults()
    server.reset()
    return server
