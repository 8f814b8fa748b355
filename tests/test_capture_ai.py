"""LLM analytics (issue #15, item 2): ``client.capture_ai`` and the AI lane, against the
fake server's ``/i/v0/ai/batch/`` (sdk-contracts §2.5: the CAI-xx named in each test)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import threading
import uuid as uuid_module

import pytest

from posthog_otel import Client, context
from tests.conftest import API_KEY, started_threads

AI = "/i/v0/ai/batch"
MIB = 1024 * 1024


def test_capture_ai_queues_on_the_ai_route_and_returns_the_uuid(server, make_client):
    """CAI-01, CAI-02, CAI-03: the uuid comes back; the event arrives on the AI route with
    a timestamp, that uuid and the SDK's ``$lib``, and no analytics request is made."""
    client = make_client()
    returned = client.capture_ai("$ai_generation", "user-123", {"$ai_model": "gpt"})
    assert returned is not None and uuid_module.UUID(returned)
    assert client.flush(5) is True
    (event,) = server.ai_events(1)
    assert event["event"] == "$ai_generation" and event["distinct_id"] == "user-123"
    assert event["uuid"] == returned and event["timestamp"]
    assert event["properties"]["$ai_model"] == "gpt"
    assert event["properties"]["$lib"] == "posthog-otel"
    assert server.events == [] and server.capture_requests() == []
    (request,) = server.wait_for_requests(1, path=AI)
    assert request.json["api_key"] and "sent_at" in request.json  # the v0 batch shape
    assert client.stats.ai.sent == 1 and client.stats.ai.enqueued == 1
    assert client.stats.sent == 0 and client.stats.attempted == 0


def test_capture_ai_accepts_every_capture_argument():
    """CAI-01: every ``capture`` parameter, same names, kinds and defaults."""
    capture = inspect.signature(Client.capture).parameters
    capture_ai = inspect.signature(Client.capture_ai).parameters
    assert list(capture) == list(capture_ai)
    for name, parameter in capture.items():
        assert capture_ai[name].kind == parameter.kind
        assert capture_ai[name].default == parameter.default


def test_capture_ai_uses_captures_admission(server, make_client):
    """CAI-02: identity context, groups, timestamp, ``before_send`` (which may drop),
    ``disable_geoip``; an explicit valid uuid arrives as given, an invalid one is
    replaced (CAI-03)."""

    def hook(event):
        if event["event"] == "$ai_drop":
            return None
        event["properties"]["filtered"] = "yes"
        return event

    client = make_client(before_send=hook)
    given = str(uuid_module.uuid4())
    with context(distinct_id="ctx-user"):
        first = client.capture_ai(
            "$ai_generation",
            properties={"$ai_model": "m"},
            groups={"company": "acme"},
            timestamp="2026-01-02T03:04:05+00:00",
            uuid=given,
            disable_geoip=False,
        )
    assert first == given
    assert client.capture_ai("$ai_drop", "u") is None
    replaced = client.capture_ai("$ai_span", "u", uuid="not-a-uuid")
    assert replaced is not None and replaced != "not-a-uuid" and uuid_module.UUID(replaced)
    assert client.flush(5) is True
    generation, span = server.ai_events(2)
    assert generation["uuid"] == given and generation["distinct_id"] == "ctx-user"
    assert generation["timestamp"].startswith("2026-01-02T03:04:05")
    assert generation["properties"]["filtered"] == "yes"
    assert generation["properties"]["$groups"] == {"company": "acme"}
    assert "$geoip_disable" not in generation["properties"]
    assert span["uuid"] == replaced
    assert client.stats.ai.dropped["before_send"] == 1
    assert client.stats.ai.corrected["invalid_uuid"] == 1


def test_capture_ai_returns_none_when_disabled_opted_out_or_closed(server, make_client):
    """CAI-01: ``None`` for a disabled client, an opted-out one and after ``close()``;
    each counted in ``stats.ai``."""
    disabled = make_client(disabled=True)
    assert disabled.capture_ai("$ai_generation", "u") is None
    assert disabled.stats.ai.dropped["disabled"] == 1
    client = make_client()
    client.opt_out()
    assert client.capture_ai("$ai_generation", "u") is None
    assert client.stats.ai.dropped["opted_out"] == 1
    client.opt_in()
    assert client.capture_ai("$ai_generation", "u") is not None
    client.close(5)
    assert client.capture_ai("$ai_generation", "u") is None
    assert client.stats.ai.dropped["closed"] == 1
    assert len(server.ai_events(1)) == 1


def test_ai_and_analytics_events_never_share_a_request(server, make_client):
    """CAI-04: the analytics batch gets only ``button_clicked`` and the AI batch only
    ``$ai_generation``; ``capture("$ai_generation")`` stays on the analytics route."""
    client = make_client()
    client.capture("button_clicked", "user-123")
    client.capture_ai("$ai_generation", "user-123")
    client.capture("$ai_generation", "user-123", {"route": "analytics"})
    assert client.flush(5) is True
    assert server.event_names() == ["button_clicked", "$ai_generation"]
    assert server.events[1]["properties"]["route"] == "analytics"
    assert [e["event"] for e in server.ai_events(1)] == ["$ai_generation"]
    for request in server.wait_for_requests(1, path=AI):
        assert [e["event"] for e in request.events] == ["$ai_generation"]
    for request in server.capture_requests():
        assert "route" in request.events[-1]["properties"]


def test_the_ai_flush_thread_starts_on_first_use(make_client):
    """CAI-04: a client that never calls ``capture_ai`` has no AI thread."""
    before = set(threading.enumerate())
    client = make_client()
    client.capture("button_clicked", "u")
    assert client.flush(5) is True
    assert started_threads(before, "posthog_otel-ai") == []
    client.capture_ai("$ai_generation", "u")
    assert client.flush(5) is True
    assert len(started_threads(before, "posthog_otel-ai")) == 1


def test_a_retry_resends_the_same_envelope(server, make_client, clock):
    """CAI-05: after a 503 the AI batch is sent again with the same timestamp,
    distinct_id, event and uuid."""
    client = make_client(_clock=clock)
    server.fail_next(1, 503, path=AI)
    client.capture_ai("$ai_generation", "u", {"$ai_model": "m"})
    client.capture_ai("$ai_embedding", "u")
    assert client.flush(5) is True
    failed, delivered = server.wait_for_requests(2, path=AI)
    assert failed.status == 503 and delivered.status == 200

    def envelope(request):
        import gzip
        import json

        body = json.loads(gzip.decompress(request.raw_body))
        keys = ("timestamp", "distinct_id", "event", "uuid")
        return [tuple(e[k] for k in keys) for e in body["batch"]]

    assert envelope(failed) == envelope(delivered)
    assert len(server.ai_events(2)) == 2
    assert client.stats.ai.retries == 1 and client.stats.retries == 0


def test_a_big_ai_event_is_delivered_and_an_oversize_one_dropped(server, make_client, warnings_log):
    """CAI-06, CAI-09: a 1 MiB ``$ai_generation`` (over the analytics cap) is delivered;
    one over 8 MiB is dropped on the flush thread, counted, and logged with only its
    name and byte size."""
    client = make_client()
    client.capture_ai("$ai_generation", "u", {"$ai_input": "a" * MIB})
    client.capture_ai("$ai_huge", "u", {"$ai_input": "secret-" + "b" * (8 * MIB)})
    assert client.flush(10) is False  # not everything was delivered
    (event,) = server.ai_events(1)
    assert event["event"] == "$ai_generation" and len(event["properties"]["$ai_input"]) == MIB
    assert client.stats.ai.dropped["oversize"] == 1
    (line,) = [r.getMessage() for r in warnings_log.records if "oversize" in r.getMessage()]
    assert "'$ai_huge'" in line and "bytes" in line
    assert "secret" not in line and "bbbb" not in line


def test_ai_batches_stay_near_five_mib(server, make_client):
    """CAI-09: about 5 MiB per request: three 2 MiB events take at least two requests,
    none much over 5 MiB."""
    client = make_client()
    for n in range(3):
        client.capture_ai("$ai_generation", "u", {"$ai_input": str(n) * (2 * MIB)})
    assert client.flush(10) is True
    assert len(server.ai_events(3)) == 3
    requests = server.wait_for_requests(2, path=AI)
    assert all(len(r.body) <= 5 * MIB + 4096 for r in requests)


def test_an_unreachable_ai_route_never_raises(make_client):
    """CAI-06: nothing listens on the host: ``capture_ai``, ``flush`` and ``close``
    return, and the loss is counted, never raised."""
    errors = []
    client = make_client(
        host="http://127.0.0.1:9",
        max_retries=0,
        max_retry_cycles=1,
        on_error=lambda exc, events: errors.append(events),
    )
    assert client.capture_ai("$ai_generation", "u") is not None
    # False, or True when the refused request was already given up before flush began
    # (a loaded machine): either way it returns and the loss is counted.
    client.flush(5)
    assert client.stats.ai.sent == 0 and sum(client.stats.ai.dropped.values()) == 1
    client.capture_ai("$ai_embedding", "u")
    client.close(5)
    stats = client.stats.ai
    assert stats.sent == 0 and sum(stats.dropped.values()) == 2
    assert [[e["event"] for e in events] for events in errors][:1] == [["$ai_generation"]]


def test_close_drains_the_ai_lane(server, make_client):
    """flush/close/exit: ``close()`` delivers what ``capture_ai`` queued, within the
    one deadline, with the analytics lane."""
    client = make_client()
    client.capture("button_clicked", "u")
    client.capture_ai("$ai_generation", "u")
    assert client.close(5) is True
    assert [e["event"] for e in server.ai_events(1)] == ["$ai_generation"]
    assert server.event_names() == ["button_clicked"]


def test_ai_events_are_flushed_at_interpreter_exit(server):
    """No flush, no close: the exit hook drains the AI lane too."""
    script = textwrap.dedent(
        f"""
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        for i in range(5):
            client.capture_ai("$ai_generation", "u", {{"n": i}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [e["properties"]["n"] for e in server.ai_events(5)] == list(range(5))


def test_a_forked_child_sends_only_its_own_ai_events(server):
    """A forked child starts with an empty AI queue and its own flush thread."""
    if not hasattr(os, "fork"):
        return
    client = Client(API_KEY, host=server.url, flush_interval=60)
    try:
        client.capture_ai("$ai_generation", "u", {"who": "parent"})
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                client.capture_ai("$ai_generation", "u", {"who": "child"})
                code = 0 if client.flush(10) and client.stats.ai.sent == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [e["properties"]["who"] for e in server.ai_events(1)] == ["child"]
    finally:
        client.close(5)
    assert sorted(e["properties"]["who"] for e in server.ai_events(2)) == ["child", "parent"]


def test_send_feature_flags_on_the_ai_route(server, make_client):
    """CAI-01/02: ``send_feature_flags=True`` fetches ``/flags`` and sends the event
    with its flag properties, on the AI route."""
    server.set_flags({"featureFlags": {"beta": True}})
    client = make_client()
    client.capture_ai("$ai_generation", "u", send_feature_flags=True)
    assert client.flush(5) is True
    (event,) = server.ai_events(1)
    assert event["properties"]["$feature/beta"] is True
    assert server.events == []


def test_the_fake_server_caps_ai_events_at_eight_mib(server):
    """The fake server: 413 for an AI event over 8 MiB, while a 2 MiB one is accepted
    (the analytics routes stop at about 1 MiB)."""
    import json

    import httpx

    def post(size):
        body = {
            "api_key": API_KEY,
            "batch": [
                {"event": "$ai_generation", "distinct_id": "u", "properties": {"x": "y" * size}}
            ],
        }
        return httpx.post(server.url + "/i/v0/ai/batch/", content=json.dumps(body)).status_code

    assert post(2 * MIB) == 200
    assert post(8 * MIB + 1) == 413
    assert len(server.ai_events(1)) == 1 and server.events == []


def test_capture_v1_leaves_the_ai_route_as_it_is(server, make_client):
    """CAI-09: with ``capture_mode="v1"`` analytics events go to v1 and AI events still
    to ``/i/v0/ai/batch/`` in the v0 batch shape."""
    client = make_client(capture_mode="v1")
    client.capture("button_clicked", "u")
    client.capture_ai("$ai_generation", "u")
    assert client.flush(5) is True
    assert server.event_names() == ["button_clicked"]
    (request,) = server.wait_for_requests(1, path=AI)
    assert [e["event"] for e in request.json["batch"]] == ["$ai_generation"]
    assert "api_key" in request.json


# ---------------------------------------------------------------- against posthog 7.91.1

# Added by posthog from its environment, and the library's own name: not compared.
_THEIR_ENRICHMENT = {"$python_runtime", "$python_version", "$os", "$os_version", "$os_distro"}
_NOT_COMPARED = _THEIR_ENRICHMENT | {"$is_server", "$lib", "$lib_version"}
_SAME_HEADERS = ("content-type", "content-encoding")


@pytest.mark.parametrize("mode", ["v0", "v1"])
def test_capture_ai_wire_matches_posthog_7_91_1(server, mode):
    """CAI-02/08/09 against the official SDK in both capture modes: the same route, body
    keys, envelope fields and event, field by field (content passed through unmodified);
    only posthog's environment properties and the ``$lib`` fields differ."""
    from posthog import Posthog

    def calls(capture_ai) -> None:
        stamp = "2026-01-02T03:04:05.123456+00:00"
        capture_ai(
            "$ai_generation",
            distinct_id="u1",
            properties={
                "$ai_model": "gpt-4o",
                "$ai_input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "$ai_output_choices": [{"role": "assistant", "content": "hello"}],
                "$ai_input_tokens": 3,
                "$ai_latency": 0.25,
            },
            groups={"company": "acme"},
            timestamp=stamp,
            uuid="0190a0a0-0000-7000-8000-0000000000a1",
        )
        capture_ai(
            "$ai_trace",
            distinct_id="u1",
            properties={"$ai_trace_id": "t"},
            timestamp=stamp,
            uuid="0190a0a0-0000-7000-8000-0000000000a2",
        )

    theirs = Posthog(API_KEY, host=server.url, sync_mode=True, capture_mode=mode, gzip=True)
    calls(theirs.capture_ai)
    theirs.shutdown()
    their_requests = list(server.requests)
    server.reset()
    ours = Client(API_KEY, host=server.url, sync_mode=True, capture_mode=mode)
    calls(ours.capture_ai)
    ours.close(2)
    our_requests = list(server.requests)
    assert len(our_requests) == len(their_requests) == 2
    for mine, their in zip(our_requests, their_requests, strict=True):
        assert mine.path == their.path == AI and mine.status == their.status == 200
        for header in _SAME_HEADERS:
            assert mine.headers[header] == their.headers[header]
        assert sorted(mine.json) == sorted(their.json)
        for key in ("api_key", "historical_migration"):
            assert mine.json[key] == their.json[key]
        (my_event,) = mine.json["batch"]
        (their_event,) = their.json["batch"]
        assert my_event["properties"]["$lib"] == "posthog-otel"
        for event in (my_event, their_event):
            for name in _NOT_COMPARED:
                event["properties"].pop(name, None)
        assert my_event == their_event
