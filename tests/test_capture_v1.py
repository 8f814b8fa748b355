"""Capture v1 (``capture_mode="v1"``): the official SDK's wire format on
``/i/v1/analytics/events``, per-event results (drop, retry) on the batching engine, and
the status codes, against the fake server's v1 endpoint."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime

import httpx
import pytest

from posthog_otel import Client, __version__
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY
from .test_delivery import assert_accounted

V1 = "/i/v1/analytics/events"


@pytest.fixture
def make_client(make_client):
    """v1 clients, with the accounting checked after the scenario and after close."""
    clients = []

    def make(**kwargs):
        kwargs.setdefault("capture_mode", "v1")
        client = make_client(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        assert_accounted(client)
        client.close(timeout=2)
        assert_accounted(client)
        assert client.stats.queued == 0 and client.stats.in_flight == 0


def v1_requests(server: FakePostHog):
    return [r for r in server.requests if r.path == V1]


# ---------------------------------------------------------------- wire


def test_v1_request_has_the_official_headers_and_body(server, make_client):
    client = make_client()
    client.capture(
        "signed up",
        "u1",
        {
            "plan": "pro",
            "$session_id": "s-1",
            "$window_id": "w-1",
            "$process_person_profile": "false",
            "$cookieless_mode": 1,
            "$ignore_sent_at": "nope",  # not coercible: left out, never sent as is
            "$product_tour_id": "tour",
            "$set": {"email": "a@b.c"},
        },
    )
    assert client.flush(5) is True
    (request,) = v1_requests(server)
    headers = request.headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["posthog-sdk-info"] == f"posthog-otel/{__version__}"
    assert headers["posthog-attempt"] == "1"
    uuid.UUID(headers["posthog-request-id"])
    assert datetime.fromisoformat(headers["posthog-request-timestamp"]).tzinfo is not None
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/json"
    assert json.loads(gzip.decompress(request.raw_body)) == request.json
    body = request.json
    assert set(body) == {"created_at", "batch"}  # no api_key, no sent_at
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    (event,) = body["batch"]
    assert list(event) == [
        "event",
        "uuid",
        "distinct_id",
        "timestamp",
        "options",
        "properties",
        "session_id",
        "window_id",
    ]
    assert event["event"] == "signed up" and event["distinct_id"] == "u1"
    assert event["options"] == {
        "cookieless_mode": True,
        "product_tour_id": "tour",
        "process_person_profile": False,
    }
    assert event["session_id"] == "s-1" and event["window_id"] == "w-1"
    properties = event["properties"]
    assert properties["plan"] == "pro" and properties["$set"] == {"email": "a@b.c"}
    for moved in ("$lib", "$lib_version", "$session_id", "$window_id", "$ignore_sent_at"):
        assert moved not in properties
    assert server.events == [event]


def test_v1_top_level_set_is_moved_into_properties(server, make_client):
    client = make_client()
    client.set("u1", {"name": "Ada"})
    assert client.flush(5) is True
    (event,) = server.events
    assert "$set" not in event and event["properties"]["$set"]["name"] == "Ada"
    assert event["options"] == {}


def test_v1_historical_migration_and_no_gzip(server, make_client):
    client = make_client(historical_migration=True, gzip=False)
    client.capture("old", "u")
    assert client.flush(5) is True
    (request,) = v1_requests(server)
    assert "content-encoding" not in request.headers
    assert request.json["historical_migration"] is True


def test_v0_stays_the_default(server, make_client):
    client = make_client(capture_mode=None)
    client.capture("e", "u")
    assert client.flush(5) is True
    assert [r.path for r in server.requests] == ["/batch"]
    assert client.config.capture_mode == "v0"


def test_posthog_capture_mode_env_selects_v1(server, monkeypatch):
    monkeypatch.setenv("POSTHOG_CAPTURE_MODE", "v1")
    client = Client(API_KEY, host=server.url, flush_interval=60)
    try:
        assert client.config.capture_mode == "v1"
        client.capture("e", "u")
        assert client.flush(5) is True
        assert [r.path for r in server.requests] == [V1]
    finally:
        client.close(2)


def test_bad_capture_mode_argument_raises_and_bad_env_falls_back(monkeypatch, warnings_log):
    with pytest.raises(ValueError, match="capture_mode"):
        Client(API_KEY, capture_mode="v2")
    monkeypatch.setenv("POSTHOG_CAPTURE_MODE", "v7")
    client = Client(API_KEY, disabled=True)
    assert client.config.capture_mode == "v0"
    assert "POSTHOG_CAPTURE_MODE" in warnings_log.text
    client.close(1)


# ---------------------------------------------------------------- per-event results


def test_rejected_events_are_dropped_and_the_rest_acknowledged(server, make_client):
    errors = []
    client = make_client(on_error=lambda exc, events: errors.append((exc, events)))
    server.set_event_results(lambda e: "drop" if e["event"] in ("b", "d") else None)
    for name in "abcde":
        client.capture(name, "u")
    assert client.flush(5) is False  # a failure: two events dropped
    assert len(v1_requests(server)) == 1  # nothing resent
    assert server.event_names() == ["a", "c", "e"]
    stats = client.stats
    assert stats.sent == 3 and stats.dropped["rejected"] == 2
    ((exc, events),) = errors
    assert [e["event"] for e in events] == ["b", "d"]
    assert exc.status == 200 and "dropped by the test" in str(exc)


def test_retry_result_resends_only_those_events_with_the_same_uuid(server, make_client, clock):
    client = make_client(_clock=clock)
    asked: set[str] = set()

    def once(event):
        if event["event"] in ("b", "c") and event["uuid"] not in asked:
            asked.add(event["uuid"])
            return "retry"
        return None

    server.set_event_results(once)
    for name in "abcd":
        client.capture(name, "u")
    assert client.flush(5) is True
    first, second = v1_requests(server)
    sent_first = {e["uuid"]: e for e in first.json["batch"]}
    resent = second.json["batch"]
    assert [e["event"] for e in resent] == ["b", "c"]
    for event in resent:  # the same event: uuid, timestamp and all
        assert event == sent_first[event["uuid"]]
    assert second.headers["posthog-attempt"] == "2"
    assert second.headers["posthog-request-id"] == first.headers["posthog-request-id"]
    assert second.json["created_at"] == first.json["created_at"]
    assert len(clock.sleeps) == 1  # one backoff before the partial retry
    assert sorted(server.event_names()) == ["a", "b", "c", "d"]
    assert client.stats.sent == 4 and client.stats.retries == 1


def test_retry_results_past_the_retries_are_retained_then_delivered(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=1)
    retry_left = {"b": 2}

    def decide(event):
        if retry_left.get(event["event"], 0) > 0:
            retry_left[event["event"]] -= 1
            return "retry"
        return None

    server.set_event_results(decide)
    for name in "abc":
        client.capture(name, "u")
    assert client.flush(5) is False  # "b" still to retry after 1 + 1 attempts
    stats = client.stats
    assert stats.sent == 2 and stats.retained == 1 and stats.queued == 1
    assert client.flush(5) is True  # the next cycle sends the retained event
    requests = v1_requests(server)
    assert [[e["event"] for e in r.json["batch"]] for r in requests] == [
        ["a", "b", "c"],
        ["b"],
        ["b"],
    ]
    assert [r.headers["posthog-attempt"] for r in requests] == ["1", "2", "3"]
    assert len({r.headers["posthog-request-id"] for r in requests}) == 1
    assert server.event_names() == ["a", "c", "b"]
    assert client.stats.sent == 3


def test_drop_and_retry_in_one_answer(server, make_client, clock):
    client = make_client(_clock=clock)
    seen: set[str] = set()

    def decide(event):
        if event["event"] == "bad":
            return "drop"
        if event["event"] == "slow" and event["uuid"] not in seen:
            seen.add(event["uuid"])
            return "retry"
        return "warning" if event["event"] == "warn" else None

    server.set_event_results(decide)
    for name in ("ok", "bad", "slow", "warn"):
        client.capture(name, "u")
    assert client.flush(5) is False
    assert server.event_names() == ["ok", "warn", "slow"]
    stats = client.stats
    assert stats.sent == 3 and stats.dropped["rejected"] == 1


def test_event_over_the_server_limit_is_dropped_alone(make_client):
    with FakePostHog(max_event_bytes=5_000) as strict:
        client = make_client(host=strict.url)
        client.capture("a", "u")
        client.capture("big", "u", {"pad": "z" * 6_000})
        client.capture("c", "u")
        assert client.flush(5) is False
        assert strict.event_names() == ["a", "c"]
        assert len(strict.requests) == 1  # no split needed: the answer is per event
        assert client.stats.dropped["rejected"] == 1


def test_a_2xx_that_is_not_the_results_protocol_delivers(make_client):
    def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": 1})

    http = httpx.Client(transport=httpx.MockTransport(app))
    client = make_client(host="http://127.0.0.1:9", http_client=http)
    client.capture("e", "u")
    assert client.flush(5) is True
    assert client.stats.sent == 1
    http.close()


# ---------------------------------------------------------------- status codes


@pytest.mark.parametrize("status", [402, 404, 415])
def test_terminal_statuses_drop_the_batch_without_retry(server, make_client, clock, status):
    errors = []
    client = make_client(_clock=clock, on_error=lambda exc, events: errors.append(exc.status))
    server.fail_next(1, status, path=V1)
    client.capture("a", "u")
    client.capture("b", "u")
    assert client.flush(5) is False
    assert len(v1_requests(server)) == 1 and clock.sleeps == []
    assert client.stats.dropped["rejected"] == 2 and errors == [status]


def test_429_is_retried_after_retry_after(server, make_client, clock):
    client = make_client(_clock=clock)
    server.fail_next(1, 429, retry_after=7, path=V1)
    client.capture("evt", "u")
    assert client.flush(5) is True
    assert len(clock.sleeps) == 1 and clock.sleeps[0] >= 7.0
    first, second = v1_requests(server)
    assert first.status == 429 and second.status == 200
    assert second.headers["posthog-attempt"] == "2"
    assert second.headers["posthog-request-id"] == first.headers["posthog-request-id"]
    assert server.event_names() == ["evt"]


def test_a_whole_batch_400_is_halved_as_in_v0(server, make_client):
    # v1 fails a whole request over one wrongly typed field: halving isolates it.
    client = make_client()
    server.fail_next(1, 400, path=V1)
    for name in "abcd":
        client.capture(name, "u")
    assert client.flush(5) is True
    sizes = [len(r.json["batch"]) if r.json else None for r in v1_requests(server)]
    assert sizes == [None, 2, 2]
    assert server.event_names() == ["a", "b", "c", "d"]


# ---------------------------------------------------------------- queue, close


def test_close_counts_what_a_held_v1_request_carried_as_shutdown(server, make_client):
    client = make_client(flush_at=2)
    release = server.hold_next(path=V1)
    client.capture("a", "u")
    client.capture("b", "u")
    server.wait_for_requests(0)
    assert client.close(timeout=0.5) is False
    release.set()
    assert client.stats.dropped["shutdown"] == 2
    assert client.stats.sent == 0


def test_sync_mode_sends_v1_on_the_callers_thread(server, make_client):
    client = make_client(sync_mode=True)
    client.capture("now", "u")
    assert server.event_names() == ["now"]
    assert v1_requests(server)[0].headers["posthog-attempt"] == "1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_v1_from_a_fresh_queue(server, make_client):
    client = make_client()
    client.capture("parent", "u")  # queued in the parent, which keeps and sends it
    pid = os.fork()
    if pid == 0:  # the child: an empty queue, its own thread and connections
        try:
            ok = client.stats.queued == 0
            client.capture("child", "u")
            ok = client.flush(5) and ok
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert client.flush(5) is True
    assert sorted(server.event_names()) == ["child", "parent"]
    assert {r.path for r in server.requests} == {V1}


def test_the_v1_flush_thread_imports_nothing(server):
    """As in v0 (tests/test_fork_threads.py): a fork during an import on our thread
    would leave the child a half-imported module; v1's answers and retries import
    nothing there either."""
    script = textwrap.dedent(
        f"""
        import sys, threading
        imported = []

        def hook(event, args):
            if event == "import" and threading.current_thread().name.startswith("posthog_otel"):
                imported.append(args[0])

        sys.addaudithook(hook)
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=60, capture_mode="v1")
        client.capture("first", "u")
        client.capture("second", "u")
        assert client.flush(10)
        print(sorted(set(imported)))
        """
    )
    server.fail_next(1, 503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", path=V1)
    asked: list[str] = []
    server.set_event_results(lambda e: None if asked else asked.append(e["uuid"]) or "retry")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.strip() == b"[]"
    assert sorted(server.event_names()) == ["first", "second"]
    assert len(v1_requests(server)) == 3  # 503, then a partial retry of one event


# ---------------------------------------------------------------- the fake server


def _post(server: FakePostHog, body: object, headers: dict[str, str] | None = None) -> int:
    base = {"Authorization": f"Bearer {API_KEY}", "PostHog-Sdk-Info": "t/1"}
    response = httpx.post(server.url + V1, json=body, headers={**base, **(headers or {})})
    return response.status_code


def _event(**fields: object) -> dict[str, object]:
    event = {
        "event": "e",
        "uuid": str(uuid.uuid4()),
        "distinct_id": "u",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "options": {},
        "properties": {},
    }
    event.update(fields)
    return event


def _body(*events: dict[str, object], **extra: object) -> dict[str, object]:
    return {"created_at": "2026-01-01T00:00:00Z", "batch": list(events or [_event()]), **extra}


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (_body(), None, 200),
        (_body(), {"Authorization": ""}, 401),
        (_body(), {"PostHog-Sdk-Info": ""}, 400),
        ({"batch": [_event()]}, None, 400),
        (_body(api_key=API_KEY), None, 400),
        (_body(_event(options={"cookieless_mode": "1"})), None, 400),
        (_body(_event(timestamp="2026-01-01T00:00:00")), None, 400),
        (_body(_event(uuid="x")), None, 400),
        (_body(_event(session_id=3)), None, 400),
    ],
)
def test_fake_server_validates_v1_requests(server, body, headers, status):
    assert _post(server, body, headers) == status
    assert len(server.events) == (1 if status == 200 else 0)


def test_fake_server_answers_per_event(server):
    events = [_event(event="keep"), _event(event="drop"), _event(event="retry")]
    server.set_event_results(lambda e: None if e["event"] == "keep" else e["event"])
    response = httpx.post(
        server.url + V1,
        json={"created_at": "2026-01-01T00:00:00Z", "batch": events},
        headers={"Authorization": f"Bearer {API_KEY}", "PostHog-Sdk-Info": "t/1"},
    )
    results = response.json()["results"]
    assert [results[e["uuid"]]["result"] for e in events] == ["ok", "drop", "retry"]
    assert server.event_names() == ["keep"]


# ---------------------------------------------------------------- against posthog 7.91.1

# What posthog adds to every event's properties from its environment (not v1-specific:
# this library does not send them in v0 either).
_THEIR_ENRICHMENT = {"$python_runtime", "$python_version", "$os", "$os_version", "$os_distro"}
_THEIR_ENRICHMENT |= {"$is_server"}
# Per request or per attempt: differ between any two requests.
_VOLATILE_HEADERS = {"posthog-request-id", "posthog-request-timestamp", "content-length"}
_TRANSPORT_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent"}


_PLAIN_UUID = "0190a0a0-0000-7000-8000-000000000002"


def _calls(api) -> None:
    """The same calls through either client (their argument names where they differ)."""
    stamp = "2026-01-02T03:04:05.123456+00:00"
    api.capture(
        "evt",
        properties={
            "a": 1,
            "$session_id": "s-1",
            "$window_id": "w-1",
            "$process_person_profile": "0",
            "$cookieless_mode": "TRUE",
            "$ignore_sent_at": 3,
            "$product_tour_id": 7,  # not a string: left out by both
        },
        timestamp=stamp,
        uuid="0190a0a0-0000-7000-8000-000000000001",
    )
    api.capture("plain", properties={"$set": {"x": 1}}, timestamp=stamp, uuid=_PLAIN_UUID)
    api.set(properties={"n": 1})  # uuid and timestamp of the moment (compared apart)
    api.set_once(properties={"first": True})


def test_v1_wire_matches_posthog_7_91_1(server):
    from posthog import Posthog

    theirs = Posthog(API_KEY, host=server.url, sync_mode=True, capture_mode="v1", gzip=True)
    _calls(_Theirs(theirs))
    theirs.shutdown()
    their_requests = list(server.requests)
    server.reset()
    ours = Client(API_KEY, host=server.url, sync_mode=True, capture_mode="v1")
    _calls(_Ours(ours))
    ours.close(2)
    our_requests = list(server.requests)
    assert len(our_requests) == len(their_requests) == 4
    for mine, their in zip(our_requests, their_requests, strict=True):
        assert mine.path == their.path == V1 and mine.status == their.status == 200
        skip = _VOLATILE_HEADERS | _TRANSPORT_HEADERS | {"posthog-sdk-info"}
        assert {k: v for k, v in mine.headers.items() if k not in skip} == {
            k: v for k, v in their.headers.items() if k not in skip
        }
        assert their.headers["posthog-sdk-info"].startswith("posthog-python/")
        assert mine.headers["posthog-sdk-info"] == f"posthog-otel/{__version__}"
        assert list(mine.json) == list(their.json)
        (my_event,) = mine.json["batch"]
        (their_event,) = their.json["batch"]
        for name in _THEIR_ENRICHMENT:
            their_event["properties"].pop(name, None)
        assert list(my_event) == list(their_event)
        if my_event["event"].startswith("$set"):
            for event in (my_event, their_event):
                uuid.UUID(event.pop("uuid"))
                assert datetime.fromisoformat(event.pop("timestamp")).utcoffset() is not None
        assert my_event == their_event


class _Theirs:
    def __init__(self, client) -> None:
        self._client = client

    def capture(self, event, **kwargs):
        self._client.capture(event, distinct_id="u1", **kwargs)

    def set(self, **kwargs):
        self._client.set(distinct_id="u1", **kwargs)

    def set_once(self, **kwargs):
        self._client.set_once(distinct_id="u1", **kwargs)


class _Ours(_Theirs):
    def capture(self, event, *, properties, **kwargs):
        self._client.capture(event, "u1", properties, **kwargs)

    def set(self, *, properties, **kwargs):
        self._client.set("u1", properties, **kwargs)

    def set_once(self, *, properties, **kwargs):
        self._client.set_once("u1", properties, **kwargs)
