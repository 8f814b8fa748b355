"""What review found uncovered (issue #11), through public behaviour only: the client's
calls and ``stats``, the fake server's recorded requests, ``FakeClock``, thread names and
small misbehaving servers written here. No test reads a private attribute of the client,
so that these survive the restructuring of the client and its integrations."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from posthog_otel import Client, PostHogHandler, PostHogProcessor
from posthog_otel.otel import PostHogSpanExporter
from posthog_otel.testing import FakePostHog

from .test_delivery import assert_accounted

SECRET = "phs_secret"
ALWAYS_ON = {
    "id": 7,
    "key": "always-on",
    "active": True,
    "filters": {"groups": [{"rollout_percentage": 100}]},
}
DEFINITIONS = {"flags": [ALWAYS_ON], "group_type_mapping": {}, "cohorts": {}}


@pytest.fixture
def make_client(make_client):
    """The shared factory, with the accounting checked as the test left the client and
    again after ``close()`` (as in test_delivery)."""
    clients: list[Client] = []

    def make(**kwargs: Any) -> Client:
        client = make_client(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        assert_accounted(client)
        client.close(timeout=2)
        assert_accounted(client)


def flag_requests(server: FakePostHog) -> list[Any]:
    return [r for r in server.requests if r.path == "/flags"]


def exposures(server: FakePostHog) -> list[dict[str, Any]]:
    return [e for e in server.events if e["event"] == "$feature_flag_called"]


# ---------------------------------------------------------------- delivery


def test_a_5xx_after_a_413_split_keeps_the_rest_with_the_failed_half(server, make_client, clock):
    """413 → halves; the first half gets a 503 with no retry left: the second half, not
    yet sent, is retained with it (one batch, in order) and both go in the next cycle."""
    client = make_client(_clock=clock, max_retries=0)
    names = [f"e{i}" for i in range(8)]
    for name in names:
        client.capture(name, "u")
    server.fail_next(1, 413)
    server.fail_next(1, 503)
    assert client.flush(5) is False
    stats = client.stats
    assert stats.retained == 8 and stats.queued == 8 and stats.sent == 0
    assert sum(stats.dropped.values()) == 0
    client.capture("later", "u")
    assert client.flush(5) is True
    assert server.event_names() == [*names, "later"]  # each once, in order
    statuses = [(r.status, len(r.events)) for r in server.capture_requests()]
    assert statuses[:2] == [(413, 0), (503, 0)]
    assert [n for status, n in statuses[2:] if status == 200] == [8, 1]
    assert client.stats.sent == 9 and client.stats.retained == 0


def test_a_5xx_on_the_second_half_of_a_413_split_retains_only_it(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=0)
    names = [f"e{i}" for i in range(8)]
    for name in names:
        client.capture(name, "u")
    server.fail_next(1, 413)
    server.delay_next(0)  # the first half is answered normally
    server.fail_next(1, 503)
    assert client.flush(5) is False
    stats = client.stats
    assert stats.sent == 4 and stats.retained == 4 and stats.queued == 4
    assert server.event_names() == names[:4]
    client.capture("later", "u")
    assert client.flush(5) is True
    assert server.event_names() == [*names, "later"]
    assert [len(r.events) for r in server.capture_requests() if r.status == 200] == [4, 4, 1]


def test_unencodable_event_is_dropped_as_serialization_and_the_batch_goes_on(
    server, make_client, warnings_log
):
    """A value that even the clean copy cannot encode (here a ``str`` subclass that
    claims to be ASCII around a lone surrogate) drops only its event, counted."""

    class LyingText(str):
        def isascii(self) -> bool:
            return True

    client = make_client()
    assert client.capture("before", "u")
    assert client.capture("unencodable", "u", {"value": LyingText("x\ud800")})
    assert client.capture("after", "u")
    assert client.flush(5) is False  # not everything enqueued was delivered
    assert server.event_names() == ["before", "after"]
    assert len(server.capture_requests()) == 1
    stats = client.stats
    assert stats.dropped["serialization"] == 1 and stats.sent == 2
    assert stats.thread_restarts == 0
    assert "serialization" in warnings_log.text and "unencodable" in warnings_log.text


def test_on_error_that_raises_is_logged_and_delivery_goes_on(server, make_client, caplog):
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    calls: list[list[str]] = []

    def on_error(exc: Exception, events: list[dict[str, Any]]) -> None:
        calls.append([e["event"] for e in events])
        raise RuntimeError("the application's callback is broken")

    client = make_client(on_error=on_error)
    server.fail_next(1, 401)
    client.capture("rejected", "u")
    assert client.flush(5) is False  # returns, raises nothing
    assert calls == [["rejected"]]
    assert client.stats.dropped["rejected"] == 1 and client.stats.failed_batches == 1
    assert "on_error callback raised" in caplog.text
    client.capture("next", "u")
    assert client.flush(5) is True
    assert server.event_names() == ["next"]
    assert client.stats.thread_restarts == 0  # nothing escaped into the flush thread


def test_an_on_error_that_always_raises_does_not_flood_the_log(server, make_client, caplog):
    """A broken callback during an outage (every batch rejected) is warned about once
    per interval like a drop, not with a traceback per batch (that goes to DEBUG)."""
    caplog.set_level(logging.DEBUG, logger="posthog_otel")

    def on_error(exc: Exception, events: list[dict[str, Any]]) -> None:
        raise ValueError("broken callback")

    client = make_client(on_error=on_error)
    for i in range(3):
        server.fail_next(1, 401)
        client.capture(f"rejected-{i}", "u")
        assert client.flush(5) is False
    assert client.stats.dropped["rejected"] == 3
    about_it = [r for r in caplog.records if "on_error" in r.getMessage()]
    loud = [r for r in about_it if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    assert "ValueError" in loud[0].getMessage() and "broken callback" in loud[0].getMessage()
    assert any(r.exc_info for r in about_it if r.levelno == logging.DEBUG)  # the traceback


def test_flush_none_waits_until_delivered(server, make_client):
    client = make_client()
    release = server.hold_next()
    client.capture("held", "u")
    results: list[bool] = []
    waiting = threading.Thread(target=lambda: results.append(client.flush(None)))
    waiting.start()
    # flush(None) has no deadline: it is still waiting while the server holds the answer.
    waiting.join(0.5)
    assert waiting.is_alive() and results == []
    release.set()
    waiting.join(5)
    assert not waiting.is_alive()
    assert results == [True]
    assert server.event_names() == ["held"]


def test_flush_none_waits_through_retries_and_returns_after_a_failed_cycle(
    server, make_client, clock
):
    client = make_client(_clock=clock, max_retries=2)
    server.fail_next(2, 503)
    client.capture("retried", "u")
    assert client.flush(None) is True  # two backoffs (fake time), then delivered
    assert len(clock.sleeps) == 2 and server.event_names() == ["retried"]
    server.fail_next(3, 503)
    client.capture("retained", "u")
    assert client.flush(None) is False  # one cycle failed: it returns, retained
    assert client.stats.retained == 1


def test_retry_after_lengthens_the_cool_down_of_a_retained_batch(server, make_client, clock):
    """The cool-down after a failed cycle is 30 s, or the server's ``Retry-After`` when
    longer (within the 5 min maximum)."""
    client = make_client(_clock=clock, max_retries=0)
    server.fail_next(1, 503, retry_after=120)
    client.capture("a", "u")
    assert client.flush(5) is False
    clock.advance(100.0)  # past the 30 s default, before the server's 120 s
    with pytest.raises(TimeoutError):
        server.wait_for_events(1, timeout=0.5)
    assert client.stats.retained == 1
    clock.advance(21.0)
    server.wait_for_events(1)
    assert server.event_names() == ["a"]


def test_a_short_retry_after_does_not_shorten_the_cool_down(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=0)
    server.fail_next(1, 503, retry_after=1)
    client.capture("a", "u")
    assert client.flush(5) is False
    clock.advance(5.0)
    with pytest.raises(TimeoutError):
        server.wait_for_events(1, timeout=0.5)
    clock.advance(26.0)
    server.wait_for_events(1)


# ---------------------------------------------------------------- flags


FAILED_AND_OK = {
    "flags": {
        "broken": {
            "key": "broken",
            "enabled": True,
            "variant": "treatment",
            "failed": True,
            "reason": {"code": "database_error"},
            "metadata": {"id": 3, "version": 2, "payload": '{"secret": 1}'},
        },
        "fine": {
            "key": "fine",
            "enabled": True,
            "reason": {"code": "condition_match"},
            "metadata": {"id": 4, "version": 1, "payload": '{"ok": 1}'},
        },
    }
}


def test_a_flags_record_marked_failed_is_no_value(server, make_client):
    """``"failed": true``: the server could not evaluate the flag; whatever else the
    record says (enabled, a variant, a payload), it is read as unknown, not as a value
    and not as off."""
    server.set_flags(FAILED_AND_OK)
    client = make_client()
    assert client.get_feature_flag("broken", "u1") is None
    assert client.get_feature_flag_result("broken", "u1") is None
    assert client.is_feature_enabled("broken", "u1") is False
    assert client.is_feature_enabled("broken", "u1", default_value=True) is True
    assert client.get_feature_flag_payload("broken", "u1") is None
    assert client.get_feature_flag("fine", "u1") is True
    assert client.get_all_flags("u1") == {"fine": True}
    assert client.get_all_flags_and_payloads("u1") == {
        "featureFlags": {"fine": True},
        "featureFlagPayloads": {"fine": {"ok": 1}},
    }
    snapshot = client.evaluate_flags("u1")
    assert snapshot.get_flag("broken") is None and snapshot.is_enabled("broken") is False
    assert client.flush(5)
    (exposure,) = [e for e in exposures(server) if e["properties"]["$feature_flag"] == "broken"]
    props = exposure["properties"]
    assert props["$feature_flag_response"] is None and props["$feature/broken"] is None
    assert props["$feature_flag_error"]  # the read reports why it has no value
    assert "$feature_flag_payload" not in props


def test_send_feature_flags_leaves_out_a_failed_record(server, make_client):
    server.set_flags(FAILED_AND_OK)
    client = make_client()  # no secret key: the flags worker asks /flags
    client.capture("checkout", "u1", send_feature_flags=True)
    assert client.flush(5)
    (event,) = server.events
    props = event["properties"]
    assert props["$feature/fine"] is True
    assert "$feature/broken" not in props
    assert "broken" not in props.get("$active_feature_flags", [])


class _DefinitionsServer:
    """``/flags/definitions`` answers 200 with each body of ``bodies`` in turn (the last
    one for ever after); ``/flags`` answers 500, so no value can come from there."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = list(bodies)
        self.definition_requests = 0
        self.flags_requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.startswith("/flags/definitions"):
                    self._answer(404, b"{}")
                    return
                owner.definition_requests += 1
                body = owner.bodies[0] if len(owner.bodies) == 1 else owner.bodies.pop(0)
                self._answer(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.startswith("/flags"):
                    owner.flags_requests += 1
                    self._answer(500, b'{"error": "down"}')
                else:
                    self._answer(200, b'{"status": 1}')

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> _DefinitionsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def definitions_server() -> Iterator[_DefinitionsServer]:
    good = json.dumps(DEFINITIONS).encode()
    with _DefinitionsServer([good, b"<html>502 Bad Gateway</html>"]) as server:
        yield server


def test_a_non_json_definitions_body_keeps_the_last_good_set(
    definitions_server, make_client, warnings_log
):
    client = make_client(host=definitions_server.url, secret_key=SECRET)
    assert client.get_feature_flag("always-on", "u1", send_feature_flag_events=False) is True
    assert definitions_server.definition_requests == 1
    client.reload_feature_flags()  # answered 200 with an HTML body
    assert definitions_server.definition_requests == 2
    assert "malformed" in warnings_log.text
    # Still evaluated locally from the last good set: /flags (failing) is never asked.
    result = client.get_feature_flag_result("always-on", "u2", send_feature_flag_events=False)
    assert result is not None and result.enabled and result.locally_evaluated
    assert client.get_all_flags("u3") == {"always-on": True}
    assert definitions_server.flags_requests == 0


class _Said(logging.Handler):
    """Sets ``event`` once the library logs a record containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_the_poller_keeps_the_last_good_set_after_a_non_json_body(
    definitions_server, make_client, clock
):
    client = make_client(
        host=definitions_server.url,
        secret_key=SECRET,
        _clock=clock,
        feature_flags_poll_interval=30.0,
    )
    assert client.get_feature_flag("always-on", "u1", send_feature_flag_events=False) is True
    said = _Said("malformed")
    library_log = logging.getLogger("posthog_otel")
    library_log.addHandler(said)
    try:
        # The poller's next refresh gets the HTML body. Time moves until it has (a poller
        # still busy with its first fetch computes its next wait after an early advance).
        for _ in range(100):
            clock.advance(31.0)
            if said.event.wait(0.1):
                break
        assert said.event.is_set()
    finally:
        library_log.removeHandler(said)
    fetched = definitions_server.definition_requests
    # One refresh at a time: this one starts once the poller's is over (and gets the
    # same body), so whatever the poller did with that body is done by now.
    client.reload_feature_flags()
    assert definitions_server.definition_requests == fetched + 1
    assert client.get_feature_flag("always-on", "u2", only_evaluate_locally=True) is True
    assert client.get_all_flags("u3", only_evaluate_locally=True) == {"always-on": True}
    assert definitions_server.flags_requests == 0


def test_a_non_json_first_definitions_body_falls_back_to_remote(make_client, warnings_log):
    with _DefinitionsServer([b"not json at all"]) as bad:
        client = make_client(host=bad.url, secret_key=SECRET)
        assert client.get_feature_flag("always-on", "u1", send_feature_flag_events=False) is None
        assert bad.definition_requests == 1 and bad.flags_requests == 1
        assert "malformed" in warnings_log.text


def test_the_flags_worker_overflows_into_events_sent_without_flags(server, make_client):
    """``send_feature_flags`` without local definitions: events wait for ``/flags`` in
    the flags worker, at most 10,000 of them; past that an event goes at once without
    flag properties, counted in ``stats.corrected["flags_unavailable"]``."""
    arrived, release = threading.Event(), threading.Event()

    def slow_flags(request: dict[str, Any]) -> dict[str, Any]:
        arrived.set()
        release.wait(30)
        return {"flags": {"beta": {"key": "beta", "enabled": True}}}

    server.set_flags(slow_flags)
    client = make_client(max_queue_size=20_000, flush_at=50_000)
    try:
        assert client.capture("first", "u1", send_feature_flags=True)
        assert arrived.wait(10)  # the worker is now busy with /flags for "first"
        extra = 7
        for i in range(10_000 + extra):
            assert client.capture(f"e{i}", "u1", send_feature_flags=True)
        stats = client.stats
        assert stats.corrected["flags_unavailable"] == extra
        assert stats.queued == 10_001 + extra and stats.attempted == 10_001 + extra
    finally:
        release.set()
    assert client.flush(30) is True
    events = server.events
    assert len(events) == 10_001 + extra
    without = [e["event"] for e in events if "$feature/beta" not in e["properties"]]
    assert without == [f"e{i}" for i in range(10_000, 10_000 + extra)]
    assert client.stats.sent == 10_001 + extra


def test_before_send_runs_on_the_flags_worker_and_its_result_is_validated(server, make_client):
    """``send_feature_flags`` without definitions: ``before_send`` runs once the flag
    properties are in (on the flags worker), and what it returns is checked as on the
    caller's path: not a dict, or no distinct id, and the event is dropped, counted."""
    server.set_flags({"flags": {"beta": {"key": "beta", "enabled": True, "variant": "b"}}})
    seen: list[tuple[str, Any, str]] = []

    def hook(event: dict[str, Any]) -> Any:
        name = event["event"]
        flag = event["properties"].get("$feature/beta")
        seen.append((name, flag, threading.current_thread().name))
        if name == "not a dict":
            return [event]
        if name == "no id":
            return {**event, "distinct_id": None}
        if name == "dropped":
            return None
        return event

    client = make_client(before_send=hook)
    for name in ("kept", "not a dict", "no id", "dropped"):
        assert client.capture(name, "u1", send_feature_flags=True)
    # Dropped before the queue, as on the caller's path: flush has nothing left to send.
    assert client.flush(5) is True
    assert sorted(seen) == sorted(
        (name, "b", "posthog_otel-flags-worker")
        for name in ("kept", "not a dict", "no id", "dropped")
    )
    (event,) = server.events
    assert event["event"] == "kept" and event["properties"]["$feature/beta"] == "b"
    dropped = client.stats.dropped
    assert dropped["before_send_error"] == 1  # not a dict
    assert dropped["invalid"] == 1  # no distinct id
    assert dropped["before_send"] == 1


# ---------------------------------------------------------------- bounded memory


@pytest.fixture
def defs_server() -> Iterator[FakePostHog]:
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        yield server


def _exposure_counter() -> tuple[list[tuple[str, Any]], Any]:
    """A ``before_send`` that notes each exposure (distinct id, groups) and drops it:
    the exposures are counted without delivering thousands of events."""
    seen: list[tuple[str, Any]] = []

    def hook(event: dict[str, Any]) -> dict[str, Any] | None:
        if event["event"] != "$feature_flag_called":
            return event
        seen.append((event["distinct_id"], event["properties"].get("$groups")))
        return None

    return seen, hook


def test_exposures_remembered_for_one_person_are_bounded(defs_server, make_client):
    """One person read with ever new group keys: past 1,000 remembered exposures the
    memory starts over, so an old one is sent again (never lost, never unbounded)."""
    seen, hook = _exposure_counter()
    client = make_client(host=defs_server.url, secret_key=SECRET, before_send=hook)

    def read(company: str) -> None:
        assert client.get_feature_flag("always-on", "u1", groups={"company": company})

    for i in range(1_001):
        read(f"c{i}")
    assert len(seen) == 1_001
    read("c1000")  # remembered
    assert len(seen) == 1_001
    read("c0")  # forgotten when the cap was reached: sent again
    assert seen[-1] == ("u1", {"company": "c0"}) and len(seen) == 1_002
    read("c0")
    assert len(seen) == 1_002


def test_the_exposure_memory_forgets_the_oldest_person_first(defs_server, make_client):
    """At most 50,000 people are remembered: a new one makes the oldest forgotten (its
    exposure is sent again on its next read), never the whole memory at once."""
    seen, hook = _exposure_counter()
    client = make_client(host=defs_server.url, secret_key=SECRET, before_send=hook)
    read = client.get_feature_flag
    for i in range(50_001):
        read("always-on", f"p{i}")
    assert len(seen) == 50_001
    read("always-on", "p50000")
    read("always-on", "p2")  # p0 was evicted, not everyone
    assert len(seen) == 50_001
    read("always-on", "p0")
    assert len(seen) == 50_002 and seen[-1][0] == "p0"


def test_negative_knowledge_of_missing_flags_is_bounded(defs_server, make_client):
    """Keys absent from the definitions and from a complete ``/flags`` answer are not
    asked again until the next refresh, for at most 10,000 keys: past that a key is
    probed each time, nothing more is remembered."""
    defs_server.set_flags({"flags": {}})
    client = make_client(host=defs_server.url, secret_key=SECRET)
    missing = [f"missing-{i}" for i in range(10_001)]
    assert client.evaluate_flags("u1", flag_keys=missing).keys == []
    assert len(flag_requests(defs_server)) == 1
    assert client.get_all_flags("u1", flag_keys=["missing-0"]) == {}
    assert client.get_all_flags("u1", flag_keys=["missing-9999"]) == {}
    assert len(flag_requests(defs_server)) == 1  # remembered: no new request
    assert client.get_all_flags("u1", flag_keys=["missing-10000"]) == {}
    assert len(flag_requests(defs_server)) == 2  # past the cap: asked again
    assert client.get_all_flags("u1", flag_keys=["missing-10000"]) == {}
    assert len(flag_requests(defs_server)) == 3  # and every time


# ---------------------------------------------------------------- integrations


def _through_handler(client: Client) -> None:
    log = logging.getLogger("tests.review_gaps.handler")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = PostHogHandler(client)
    log.addHandler(handler)
    try:
        log.warning("from logging", extra={"distinct_id": "u1"})
    finally:
        log.removeHandler(handler)


def _through_processor(client: Client) -> None:
    event_dict = {"event": "from structlog", "distinct_id": "u1", "level": "info"}
    assert PostHogProcessor(client)(None, "info", dict(event_dict)) == event_dict


def _through_span_exporter(client: Client) -> None:
    provider = TracerProvider()
    exporter = PostHogSpanExporter(client)
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span: Any) -> None:
            results.append(exporter.export([span]))

    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"user.id": "u1"}):
        pass
    assert results == [SpanExportResult.SUCCESS]
    assert exporter.errors == 0


INTEGRATIONS = {
    "logging": (_through_handler, "from logging"),
    "structlog": (_through_processor, "from structlog"),
    "otel": (_through_span_exporter, "op"),
}


@pytest.mark.parametrize("integration", sorted(INTEGRATIONS))
@pytest.mark.parametrize("state", ["closed", "opted_out"])
def test_integrations_feeding_a_client_that_accepts_nothing(
    server, make_client, integration, state
):
    """An event handed over by an integration while the client is closed or opted out
    is refused like a capture: no exception, counted under that reason, and accounted
    for in ``stats.attempted``."""
    feed, name = INTEGRATIONS[integration]
    client = make_client()
    if state == "closed":
        assert client.close(2) is True
    else:
        client.opt_out()
    feed(client)  # raises nothing
    stats = client.stats
    assert stats.attempted == 1 and stats.enqueued == 0
    assert stats.dropped[state] == 1
    assert sum(stats.dropped.values()) == 1
    assert_accounted(client)
    if state == "opted_out":
        client.opt_in()
        feed(client)
        assert client.flush(5) is True
        assert server.event_names() == [name]
        assert client.stats.attempted == 2 and client.stats.sent == 1
    else:
        assert client.flush(1) is True  # nothing was queued
        assert server.events == []
