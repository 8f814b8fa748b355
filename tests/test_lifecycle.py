"""Lifecycle: close() within its deadline, delivery at interpreter exit whatever the
order of the exit hooks, and clients dropped without close()."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posthog_otel import Client
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY, started_threads
from .test_delivery import assert_accounted

ROOT = Path(__file__).resolve().parent.parent


class _SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (nor closes them)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.accepted = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._held.append(conn)
            self.accepted.release()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def silent() -> Iterator[_SilentServer]:
    server = _SilentServer()
    yield server
    server.close()


def _silent_client(silent: _SilentServer, **kwargs: object) -> Client:
    """A client whose capture requests and flag poller hang on ``silent``."""
    client = Client(
        API_KEY,
        host=silent.url,
        personal_api_key="phx_secret",
        feature_flags_initial_load_timeout=0.05,
        _exit_hook=False,
        **kwargs,  # type: ignore[arg-type]
    )
    client.get_feature_flag("flag", "u1", only_evaluate_locally=True)  # starts the poller
    assert silent.accepted.acquire(timeout=10)  # the poller's request is hanging
    return client


def _timed_close(client: Client, timeout: float | None) -> float:
    started = time.monotonic()
    client.close(timeout)
    return time.monotonic() - started


# ------------------------------------------------------------------ item 5: close deadline


def test_close_with_timeout_returns_within_it(silent):
    client = _silent_client(silent, timeout=30.0)
    for i in range(5):
        client.capture("e", "u1", {"i": i})
    client.capture("with_flags", "u1", send_feature_flags=True)  # waits in the flags worker
    assert _timed_close(client, 1.0) < 3.0
    stats = client.stats
    assert stats.sent == 0


def test_close_without_argument_means_shutdown_timeout(silent):
    client = _silent_client(silent, timeout=30.0, shutdown_timeout=1.0)
    client.capture("e", "u1")
    assert _timed_close(client, None) < 3.0
    assert client.stats.dropped["shutdown"] >= 1


def test_close_mid_retry_cycle_returns_within_timeout(silent):
    client = _silent_client(silent, timeout=0.3, max_retries=5, shutdown_timeout=1.0)
    client.capture("e", "u1")
    client.flush(0)  # start a delivery cycle: requests time out and are retried
    assert silent.accepted.acquire(timeout=10)  # the capture request is hanging
    assert _timed_close(client, None) < 3.0


def test_flush_shares_its_timeout_with_the_flags_worker(silent):
    client = _silent_client(silent, timeout=30.0)
    try:
        client.capture("with_flags", "u1", send_feature_flags=True)
        client.capture("e", "u1")
        started = time.monotonic()
        assert client.flush(1.0) is False
        assert time.monotonic() - started < 3.0
    finally:
        client.close(0.5)


def test_sync_mode_close_returns_within_its_timeout_while_a_caller_sends(server):
    """sync_mode: a caller thread blocked in a request does not hold close() up."""
    requested = threading.Event()
    http = httpx.Client(event_hooks={"request": [lambda request: requested.set()]})
    client = Client(
        API_KEY,
        host=server.url,
        sync_mode=True,
        timeout=30.0,
        http_client=http,
        _exit_hook=False,
    )
    hold = server.hold_next()
    sending = threading.Thread(target=client.capture, args=("e", "u1"))
    sending.start()
    assert requested.wait(10)  # the capture's request is held by the server
    try:
        assert _timed_close(client, 0.5) < 3.0
        stats = client.stats
        assert stats.dropped["shutdown"] == 1 and stats.queued == stats.in_flight == 0
    finally:
        hold.set()
        sending.join(10)
        http.close()
    stats = client.stats  # the late answer is not counted again
    assert stats.sent == 0 and stats.dropped["shutdown"] == 1
    assert_accounted(client)


def test_sync_mode_close_cuts_its_own_delivery_at_the_deadline(server):
    client = Client(
        API_KEY, host=server.url, sync_mode=True, timeout=30.0, max_retries=0, _exit_hook=False
    )
    server.fail_next(1, 503)
    client.capture("e", "u1")  # fails its cycle: retained for the next flush
    assert client.stats.retained == 1
    hold = server.hold_next()
    try:
        assert _timed_close(client, 0.5) < 3.0  # close's flush must not wait 30 s
    finally:
        hold.set()
    stats = client.stats
    assert stats.dropped["shutdown"] == 1 and stats.sent == 0
    assert_accounted(client)


# ------------------------------------------------------------------ item 10: exit order


def _run(script: str) -> subprocess.CompletedProcess[bytes]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=60, env=env
    )


_PROVIDER = """
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
provider = TracerProvider()
"""
_PROVIDER_NO_EXIT = """
from opentelemetry.sdk.trace import TracerProvider
provider = TracerProvider(shutdown_on_exit=False)
"""
_CLIENT = """
from posthog_otel import Client
client = Client({key!r}, host={url!r}, flush_interval=3600)
"""
_BATCH = """
from posthog_otel.otel import PostHogSpanExporter
provider.add_span_processor(
    BatchSpanProcessor(PostHogSpanExporter(client), schedule_delay_millis=3_600_000)
)
"""
_INSTRUMENT = """
from posthog_otel.otel import instrument
instrument(provider, client, schedule_delay_millis=3_600_000)
"""
_LATE = """
import atexit, logging
log = logging.getLogger("app")

def late():  # registered before the client's exit hook: runs after it
    client.capture("captured_at_exit", "u1")
    log.warning("logged_at_exit", extra={{"distinct_id": "u1"}})  # after the capture's flush

atexit.register(late)
"""
_HANDLER = """
from posthog_otel.logging import PostHogHandler
log.addHandler(PostHogHandler(client))
"""
_SPAN = """
with provider.get_tracer("t").start_as_current_span(
    "span_at_exit", attributes={{"posthog.distinct_id": "u1"}}
):
    pass
"""


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param((_LATE, _PROVIDER, _CLIENT, _HANDLER, _BATCH), id="provider-first-batch"),
        pytest.param((_LATE, _CLIENT, _HANDLER, _PROVIDER, _BATCH), id="client-first-batch"),
        pytest.param((_LATE, _PROVIDER, _CLIENT, _HANDLER, _INSTRUMENT), id="provider-first-instr"),
        pytest.param((_LATE, _CLIENT, _HANDLER, _PROVIDER, _INSTRUMENT), id="client-first-instr"),
        pytest.param(
            (_LATE, _PROVIDER_NO_EXIT, _CLIENT, _HANDLER, _INSTRUMENT), id="no-provider-exit"
        ),
    ],
)
def test_everything_handed_over_at_exit_arrives(server: FakePostHog, parts: tuple[str, ...]):
    script = "".join(part.format(key=API_KEY, url=server.url) for part in (*parts, _SPAN))
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(server.event_names()) == [
        "captured_at_exit",
        "logged_at_exit",
        "span_at_exit",
    ], proc.stderr.decode()
    assert b"dropped" not in proc.stderr


# ------------------------------------------------------------------ item 11: dropped clients


def test_clients_dropped_without_close_are_flushed_at_exit(server: FakePostHog):
    script = f"""
    import gc, logging
    logging.basicConfig()
    from posthog_otel import Client

    def job(i):  # the usual mistake: a client per call, never closed
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        client.capture("job_done", "u1", {{"i": i}})

    for i in range(20):
        job(i)
    gc.collect()
    """
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(e["properties"]["i"] for e in server.events) == list(range(20))
    assert proc.stderr.count(b"PostHog clients are open at once") == 1, proc.stderr.decode()


def test_a_closed_client_is_no_longer_held():
    client = Client(API_KEY, host="http://127.0.0.1:9")
    held = weakref.ref(client)
    client.close(0)
    del client
    gc.collect()
    assert held() is None  # nothing keeps a closed client alive for the exit flush


def test_exit_with_many_dropped_clients_and_the_server_down_is_bounded():
    script = f"""
    import logging
    logging.basicConfig()
    from posthog_otel import Client

    for i in range(20):
        Client({API_KEY!r}, host="http://127.0.0.1:9", shutdown_timeout=1.0).capture("e", "u1")
    """
    started = time.monotonic()
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr.decode()
    assert time.monotonic() - started < 15  # one shutdown_timeout for all, not 20 in a row
    assert b"shutdown" in proc.stderr  # the loss is reported


def test_exit_stops_the_flag_poller_and_flags_still_answer(server: FakePostHog):
    server.set_flag_definitions(
        {
            "flags": [
                {
                    "id": 1,
                    "key": "beta",
                    "active": True,
                    "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
                }
            ],
            "group_type_mapping": {},
            "cohorts": {},
        }
    )
    script = f"""
    import atexit

    def late():  # runs after the client's exit hook
        import threading
        pollers = [t for t in threading.enumerate() if t.name == "posthog_otel-flags"]
        for poller in pollers:
            poller.join(2)
        print("closed", not any(t.is_alive() for t in pollers))
        print("beta", client.get_feature_flag("beta", "u1", only_evaluate_locally=True))

    atexit.register(late)
    from posthog_otel import Client
    client = Client({API_KEY!r}, host={server.url!r}, personal_api_key="phx_secret",
                    feature_flags_poll_interval=0.05)
    assert client.get_feature_flag("beta", "u1", only_evaluate_locally=True) is True
    import threading
    print("polling", any(t.name == "posthog_otel-flags" for t in threading.enumerate()))
    """
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr.decode()
    expected = [b"polling", b"True", b"closed", b"True", b"beta", b"True"]
    assert proc.stdout.split() == expected, proc.stderr.decode()


def test_sync_mode_flush_zero_leaves_the_queue_as_it_is(server):
    client = Client(API_KEY, host=server.url, sync_mode=True, max_retries=0, _exit_hook=False)
    server.fail_next(1, 503)
    client.capture("e", "u1")  # retained after its failed cycle
    assert client.flush(0) is False  # no time: nothing is sent, nothing fails again
    assert client.stats.retained == 1 and client.stats.failed_batches == 0
    assert client.flush(5) is True
    assert server.event_names() == ["e"]
    client.close(1)
    assert_accounted(client)


def test_close_from_on_error_also_stops_the_flag_poller(server):
    """close() called by on_error (on the flush thread) finishes on a helper thread: all
    of it, not only the exporter (the poller used to poll on for ever)."""
    box: list[Client] = []
    handled = threading.Event()

    def on_error(exc: Exception, events: list[dict[str, object]]) -> None:
        box[0].close(2)
        handled.set()

    before = set(threading.enumerate())
    client = Client(
        API_KEY,
        host=server.url,
        personal_api_key="phx_secret",
        on_error=on_error,
        _exit_hook=False,
    )
    box.append(client)
    client.get_feature_flag("flag", "u1", only_evaluate_locally=True)  # starts the poller
    [poller] = started_threads(before, "posthog_otel-flags")
    server.fail_next(1, 401)
    client.capture("rejected", "u1")
    client.flush(5)
    assert handled.wait(5)
    poller.join(5)
    assert not poller.is_alive()
    assert_accounted(client)


def test_integration_events_handed_over_after_the_exit_flush_arrive(server: FakePostHog):
    """A structlog event (nothing flushes for the processor) and a span through a
    SimpleSpanProcessor of a provider that never shuts down, both from an exit hook that
    runs after the client's: queued deferred items are delivered like captures."""
    script = f"""
    import atexit
    import structlog
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    def late():  # registered before the client's exit hook: runs after it
        structlog.get_logger().info("structlog_at_exit", distinct_id="u1")
        with provider.get_tracer("t").start_as_current_span(
            "span_at_exit", attributes={{"posthog.distinct_id": "u1"}}
        ):
            pass

    atexit.register(late)
    from posthog_otel import Client
    from posthog_otel.otel import PostHogSpanExporter
    from posthog_otel.structlog import PostHogProcessor

    client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
    structlog.configure(
        processors=[PostHogProcessor(client), lambda logger, method, event: ""],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client)))
    """
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(server.event_names()) == ["span_at_exit", "structlog_at_exit"], (
        proc.stderr.decode()
    )


def test_close_is_not_held_up_by_a_slow_definitions_cache_provider(server):
    from posthog_otel.testing import InMemoryFlagDefinitionCache

    release = threading.Event()
    shutdowns: list[int] = []

    class Stuck(InMemoryFlagDefinitionCache):
        def shutdown(self) -> None:
            shutdowns.append(1)
            release.wait(30)

    client = Client(
        API_KEY,
        host=server.url,
        personal_api_key="phx_secret",
        flag_definition_cache_provider=Stuck(should_fetch=True),
        _exit_hook=False,
    )
    client.get_feature_flag("flag", "u1", only_evaluate_locally=True)  # starts the poller
    try:
        assert _timed_close(client, 0.5) < 3.0
        assert _timed_close(client, 0.5) < 3.0
    finally:
        release.set()
    assert shutdowns == [1]  # once, however often close() runs


def test_an_event_still_waiting_for_flags_at_exit_is_counted(server: FakePostHog):
    hold = server.hold_next(path="/flags")
    script = f"""
    import logging
    logging.basicConfig()
    from posthog_otel import Client

    client = Client({API_KEY!r}, host={server.url!r}, shutdown_timeout=1.0,
                    feature_flags_request_timeout=20)
    client.capture("with_flags", "u1", send_feature_flags=True)
    """
    try:
        proc = _run(script)
    finally:
        hold.set()
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"dropped 1 event(s): shutdown" in proc.stderr, proc.stderr.decode()


def test_a_multiprocessing_child_delivers_what_it_captured(server: FakePostHog):
    """A multiprocessing child ends with os._exit (no atexit hooks): its events are
    flushed by a multiprocessing finalizer instead of being lost."""
    script = f"""
    import multiprocessing
    from posthog_otel import Client

    client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)

    def work():
        client.capture("from_child", "u1")

    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(20)
    assert child.exitcode == 0
    client.capture("from_parent", "u1")
    """
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(server.event_names()) == ["from_child", "from_parent"], proc.stderr.decode()


def test_a_closed_client_opens_no_new_connections(server):
    client = Client(API_KEY, host=server.url, _exit_hook=False)
    client.capture("e", "u1")
    assert client.close(5) is True
    assert client.get_feature_flag("beta", "u1") is None  # no request: the default
    assert client.is_feature_enabled("beta", "u1", default_value=True) is True
    assert [r for r in server.requests if r.path == "/flags"] == []
