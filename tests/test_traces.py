"""PostHog Traces, the lane side (issue #14, item 4): ``client.traces.submit(span)``,
its gates, fail-closed hook and limits, the traces lane's own queue, thread and
counters (``client.stats.traces``), and flush/close/exit/fork, against the fake server.
The [S] scenarios of sdk-contracts §2.2 that concern the lane, one by one; what is sent
is parsed into the real ``opentelemetry-proto`` messages."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

import posthog_otel
from posthog_otel import TracesConfig
from posthog_otel._stats import POST_QUEUE_DROPS, PRE_QUEUE_DROPS
from posthog_otel._traces import SpanDropStats
from posthog_otel.testing import FakePostHog
from tests.conftest import API_KEY, started_threads

TRACES = "/i/v1/traces"
LOGS = "/i/v1/logs"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _span(i: int = 0, **fields: Any) -> dict[str, Any]:
    now = time.time_ns()
    span = {
        "trace_id": TRACE_ID,
        "span_id": f"{i + 1:016x}",
        "parent_span_id": None,
        "trace_state": None,
        "name": f"work {i}",
        "kind": "internal",
        "start_ns": now,
        "end_ns": now + 1_000,
        "attributes": {},
        "events": [],
        "status": None,
        "status_message": None,
        "flags": 1,
    }
    span.update(fields)
    return span


def _attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {kv["key"]: kv["value"] for kv in item.get("attributes", [])}


def _proto(request: Any) -> trace_service_pb2.ExportTraceServiceRequest:
    """The request's body as the real proto message (hex ids to the base64
    ``json_format`` reads); a body that is not OTLP fails the test."""
    converted = orjson.loads(orjson.dumps(request.json))
    for resource_spans in converted["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    message = trace_service_pb2.ExportTraceServiceRequest()
    json_format.ParseDict(converted, message)
    return message


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# ------------------------------------------------------------------ the switch (TRC-28)


def test_traces_is_off_by_default_and_on_with_true_or_a_config(make_client):
    assert make_client().traces.enabled is False
    assert make_client().config.traces is None
    assert make_client(traces=False).traces.enabled is False
    on = make_client(traces=True)
    assert on.traces.enabled is True and on.config.traces.max_attributes == 128
    configured = make_client(traces=TracesConfig(max_events=3))
    assert configured.traces.enabled and configured.traces.config.max_events == 3
    assert make_client(traces=True, disabled=True).traces.enabled is False
    # The lane has the defaults when the native API is off: the exporters use it.
    assert make_client().traces.config == on.config.traces


@pytest.mark.parametrize("bad", ["yes", 1, TracesConfig(max_events=0)])
def test_a_bad_traces_option_raises_naming_it(bad):
    with pytest.raises(ValueError, match="traces"):
        posthog_otel.Client(API_KEY, traces=bad, _exit_hook=False)


# ------------------------------------------------------------------ wire (TRC-09, 15-18)


def test_twenty_spans_are_one_request_of_valid_otlp(make_client, server):
    client = make_client()
    for i in range(20):
        assert client.traces.submit(_span(i, attributes={"i": i}))
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=TRACES)
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-encoding"] == "gzip" and request.query == {}
    message = _proto(request)
    (resource_spans,) = message.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    assert len(scope_spans.spans) == 20
    assert all(len(s.trace_id) == 16 and len(s.span_id) == 8 for s in scope_spans.spans)
    assert scope_spans.scope.name == "posthog-otel"
    assert client.stats.traces.sent == 20 and client.stats.sent == 0


def test_without_gzip_the_body_is_raw_with_no_encoding_header(make_client, server):
    client = make_client(gzip=False)
    client.traces.submit(_span())
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=TRACES)
    assert "content-encoding" not in request.headers
    assert request.raw_body == request.body


def test_service_name_defaults_to_unknown_service_and_sdk_keys_win(
    make_client, server, monkeypatch
):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    client = make_client(
        traces=TracesConfig(resource_attributes={"telemetry.sdk.name": "custom", "host": "h"})
    )
    client.traces.submit(_span())
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=TRACES)
    resource = _attributes(request.json["resourceSpans"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "unknown_service"}
    assert resource["telemetry.sdk.name"] == {"stringValue": "posthog-otel"}
    assert resource["host"] == {"stringValue": "h"}


def test_the_span_record_fields_reach_the_wire(make_client, server):
    client = make_client(traces=TracesConfig(service_name="checkout"))
    start = time.time_ns()
    client.traces.submit(
        _span(
            parent_span_id="b7ad6b7169203331",
            trace_state="vendor=abc",
            kind="server",
            start_ns=start,
            end_ns=start + 5_000,
            attributes={"userId": 42, "gone": None, "big": 2**64},
            events=[{"name": "exception", "time_ns": start + 1, "attributes": {"k": "v"}}],
            status="error",
            status_message="boom",
        )
    )
    assert client.flush(5)
    (span,) = server.wait_for_spans(1)
    assert span["parentSpanId"] == "b7ad6b7169203331" and span["traceState"] == "vendor=abc"
    assert span["kind"] == 2 and span["status"] == {"code": 2, "message": "boom"}
    assert span["startTimeUnixNano"] == str(start)
    assert span["endTimeUnixNano"] == str(start + 5_000)
    attributes = _attributes(span)
    assert attributes["userId"] == {"intValue": "42"} and "gone" not in attributes
    assert attributes["big"] == {"stringValue": "18446744073709551616"}
    assert span["events"][0]["name"] == "exception"
    (request,) = server.wait_for_requests(1, path=TRACES)
    resource = _attributes(request.json["resourceSpans"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "checkout"}


def test_a_span_without_valid_ids_is_dropped_as_invalid_before_the_queue(make_client, server):
    client = make_client()
    assert client.traces.submit(_span(trace_id="0" * 32)) is False
    assert client.traces.submit(_span(span_id="xyz")) is False
    assert client.traces.submit("not a span") is False  # type: ignore[arg-type]
    assert client.traces.submit(_span(parent_span_id="nope"))  # an invalid parent is left out
    assert client.flush(5)
    (span,) = server.wait_for_spans(1)
    assert "parentSpanId" not in span
    assert client.stats.traces.dropped["invalid"] == 3


# ------------------------------------------------------------------ gates (TRC-26, 27)


def test_gates_in_order_disabled_opted_out(make_client, server):
    disabled = make_client(disabled=True)
    assert disabled.traces.submit(_span()) is False
    assert disabled.stats.traces.dropped["disabled"] == 1
    client = make_client()
    assert client.traces.submit(_span(0))
    client.opt_out()  # mid-trace: later spans are not exported, nothing raises
    assert client.traces.opted_out
    assert client.traces.submit(_span(1)) is False
    client.opt_in()
    assert client.traces.submit(_span(2))
    assert client.flush(5)
    assert [s["name"] for s in server.wait_for_spans(2)] == ["work 0", "work 2"]
    assert client.stats.traces.dropped["opted_out"] == 1


def test_before_send_returning_none_queues_nothing(make_client, server):
    seen = []

    def hook(span):
        seen.append(span["attributes"]["userId"])  # plain 42, not {"intValue": "42"}
        return None

    client = make_client(traces=TracesConfig(before_send=hook))
    assert client.traces.submit(_span(attributes={"userId": 42})) is False
    assert seen == [42]
    assert client.stats.traces.dropped["before_send"] == 1
    assert client.stats.traces.enqueued == 0


def test_before_send_that_raises_drops_the_span_fail_closed(make_client, server, warnings_log):
    def scrub(span):
        raise RuntimeError("scrubber broke")

    client = make_client(traces=TracesConfig(before_send=[scrub]))
    assert client.traces.submit(_span(attributes={"card": "4242"})) is False  # never raises
    assert client.traces.submit(_span(1)) is False
    assert client.flush(5)
    assert server.spans() == [] and not [r for r in server.requests if r.path == TRACES]
    assert client.stats.traces.dropped["before_send_error"] == 2
    assert any("scrubber broke" in r.getMessage() for r in warnings_log.records)


def test_before_send_returning_a_non_dict_drops_the_span(make_client):
    client = make_client(traces=TracesConfig(before_send=lambda span: "nope"))
    assert client.traces.submit(_span()) is False
    assert client.stats.traces.dropped["before_send_error"] == 1


def test_before_send_chain_sees_a_plain_view_and_cannot_change_the_ids(make_client, server, caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")

    def first(span):
        assert span["kind"] == "server" and span["status"] == "error"
        span["trace_id"] = "1" * 32  # read-only: undone
        span["span_id"] = "2" * 16
        span["parent_span_id"] = "3" * 16
        span["name"] = "GET /users/:id"
        span["attributes"].pop("card")
        return span

    def second(span):
        assert span["trace_id"] == TRACE_ID  # reading works, the change did not stick
        span["attributes"]["scrubbed"] = True
        return span

    client = make_client(traces=TracesConfig(before_send=[first, second]))
    original = _span(kind="server", status="error", attributes={"card": "4242", "k": 1})
    assert client.traces.submit(original)
    assert original["attributes"] == {"card": "4242", "k": 1}  # the caller's span untouched
    assert client.flush(5)
    (span,) = server.wait_for_spans(1)
    assert span["traceId"] == TRACE_ID and span["spanId"] == original["span_id"]
    assert "parentSpanId" not in span
    assert span["name"] == "GET /users/:id"
    assert set(_attributes(span)) == {"k", "scrubbed"}
    assert any("cannot change trace_id" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ limits (TRC-12)


def test_130_attributes_with_a_limit_of_128_send_128_and_count_2(make_client, server):
    client = make_client()
    attributes = {f"a{i:03d}": i for i in range(130)}
    attributes["posthogDistinctId"] = "u1"  # automatic keys are exempt
    attributes["sessionId"] = "s1"
    client.traces.submit(_span(attributes=attributes))
    assert client.flush(5)
    (span,) = server.wait_for_spans(1)
    sent = _attributes(span)
    assert len(sent) == 130 and span["droppedAttributesCount"] == 2
    assert "a127" in sent and "a128" not in sent  # the earliest win
    assert sent["posthogDistinctId"] == {"stringValue": "u1"} and "sessionId" in sent


def test_limits_apply_again_after_the_hook_and_add_to_given_counts(make_client, server):
    def add(span):
        span["attributes"].update({f"hook{i}": i for i in range(5)})
        span["events"].append({"name": "late", "time_ns": span["start_ns"], "attributes": {}})
        return span

    client = make_client(traces=TracesConfig(max_attributes=3, max_events=2, before_send=add))
    events = [{"name": f"e{i}", "time_ns": time.time_ns(), "attributes": {}} for i in range(2)]
    client.traces.submit(
        _span(attributes={"a": 1, "b": 2}, events=events, dropped_attributes_count=4)
    )
    assert client.flush(5)
    (span,) = server.wait_for_spans(1)
    assert list(_attributes(span)) == ["a", "b", "hook0"]
    assert span["droppedAttributesCount"] == 4 + 4
    assert [e["name"] for e in span["events"]] == ["e0", "e1"]
    assert span["droppedEventsCount"] == 1


# ------------------------------------------------------------------ queue (TRC-19, 21-25)


def test_on_overflow_the_incoming_span_is_dropped_and_queued_ones_are_kept(make_client, server):
    client = make_client(traces=TracesConfig(max_queue_size=3, max_batch_size=10))
    assert [client.traces.submit(_span(i)) for i in range(4)] == [True, True, True, False]
    assert client.stats.traces.dropped["queue_full"] == 1
    assert client.stats.traces.dropped["evicted"] == 0
    assert client.flush(5)
    assert [s["name"] for s in server.wait_for_spans(3)] == ["work 0", "work 1", "work 2"]


def test_every_drop_is_one_counter_warned_once_per_interval_with_the_mix(
    make_client, server, warnings_log
):
    client = make_client(traces=TracesConfig(max_queue_size=1, flush_interval=60))
    traces = client.traces
    traces.drop("live_limit")  # the native API's refusal, counted with the lane's drops
    traces.drop("span_age", 2)
    client.traces.submit(_span(0))
    client.traces.submit(_span(1))  # queue_full
    stats = client.stats.traces
    assert stats.dropped["live_limit"] == 1 and stats.dropped["span_age"] == 2
    assert stats.dropped["queue_full"] == 1
    assert stats.attempted == 5 and stats.enqueued == 1
    warnings = [r.getMessage() for r in warnings_log.records if "span(s)" in r.getMessage()]
    assert len(warnings) == 1 and "live_limit 1" in warnings[0]  # the first, then silence
    client.close(5)


def test_the_mix_of_reasons_is_reported_in_the_next_interval(warnings_log):
    now = [100.0]
    stats = SpanDropStats(5.0, now=lambda: now[0])
    stats.drop("live_limit")
    stats.drop("span_age", 2)
    now[0] += 4.9
    stats.drop("live_limit")
    now[0] += 0.2  # the interval has passed
    stats.drop("live_limit")
    warnings = [r.getMessage() for r in warnings_log.records if "span(s)" in r.getMessage()]
    assert len(warnings) == 2
    assert "dropped 4 span(s)" in warnings[1] and "live_limit 2, span_age 2" in warnings[1]
    assert stats.dropped["live_limit"] == 3 and stats.dropped["span_age"] == 2


def test_drops_the_application_asked_for_alone_are_not_warned(caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    SpanDropStats(5.0).drop("opted_out")
    (record,) = [r for r in caplog.records if "span(s)" in r.getMessage()]
    assert record.levelno == logging.DEBUG


def test_a_queue_depth_of_max_batch_size_starts_a_send(make_client, server):
    # TRC-22: the timer (60 s here), a manual flush, or the depth reaching the batch size.
    client = make_client(traces=TracesConfig(max_batch_size=5))
    for i in range(5):
        client.traces.submit(_span(i))
    assert len(server.wait_for_spans(5, timeout=5)) == 5  # no flush() called
    (request,) = server.wait_for_requests(1, path=TRACES)
    assert len(request.spans) == 5


def test_a_50_span_batch_refused_with_413_is_resent_in_halves(make_client, server):
    client = make_client(traces=TracesConfig(max_batch_size=50))
    server.fail_next(1, status=413, path=TRACES)
    for i in range(50):
        client.traces.submit(_span(i))
    assert client.flush(5)
    sizes = [len(r.spans) for r in server.wait_for_requests(3, path=TRACES)]
    assert sizes == [0, 25, 25] and len(server.spans()) == 50
    assert client.stats.traces.retries == 0  # shrinking is not a retry


def test_a_single_span_refused_with_413_is_dropped_with_a_warning(
    make_client, server, warnings_log
):
    client = make_client()
    server.fail_next(1, status=413, path=TRACES)
    client.traces.submit(_span())
    assert client.flush(5) is False
    assert client.stats.traces.dropped["oversize"] == 1
    # The flush thread warns just after settling the drop: wait for the record.
    _wait_for(lambda: any("oversize" in r.getMessage() for r in warnings_log.records))


def test_a_400_drops_the_batch_without_retrying(make_client, server):
    client = make_client()
    server.fail_next(1, status=400, path=TRACES)
    for i in range(3):
        client.traces.submit(_span(i))
    assert client.flush(5) is False
    assert len(server.wait_for_requests(1, path=TRACES)) == 1
    assert client.stats.traces.dropped["rejected"] == 3 and client.stats.traces.retries == 0


def test_a_batch_that_keeps_failing_is_dropped_and_sending_goes_on(make_client, server):
    client = make_client(max_retries=0, max_retry_cycles=1)
    server.fail_next(1, status=500, path=TRACES)
    client.traces.submit(_span(0))
    assert client.flush(5) is False
    assert client.stats.traces.dropped["retries_exhausted"] == 1
    client.traces.submit(_span(1))
    assert client.flush(5)
    assert [s["name"] for s in server.spans()] == ["work 1"]


def test_spans_are_still_queued_during_backoff_up_to_the_queue_size(make_client, server):
    client = make_client(max_retries=0, traces=TracesConfig(max_queue_size=4))
    # Every attempt fails until the faults are cleared: the lane's first cycle may send
    # on its own before flush() is called, and an explicit flush retries at once.
    server.fail_next(1000, status=500, path=TRACES)
    client.traces.submit(_span(0))
    assert client.flush(10) is False  # retained, cooling down (30 s)
    _wait_for(lambda: client.stats.traces.retained == 1)
    results = [client.traces.submit(_span(i)) for i in range(1, 5)]
    assert results == [True, True, True, False]
    assert client.stats.traces.retained == 1
    server.clear_faults()
    assert client.flush(5)
    assert len(server.spans()) == 4


def test_a_request_that_never_completes_times_out_and_is_retried(make_client, server):
    client = make_client(timeout=0.5, max_retries=1)
    release = server.hold_next(path=TRACES)
    try:
        client.traces.submit(_span())
        assert client.flush(10)
    finally:
        release.set()
    assert [s["name"] for s in server.spans()][-1] == "work 0"
    assert client.stats.traces.retries >= 1


def test_a_429_keeps_the_spans_for_after_its_retry_after(make_client, server):
    client = make_client(max_retries=0)
    server.fail_next(1, status=429, retry_after=60, path=TRACES)
    client.traces.submit(_span())
    assert client.flush(10) is False  # held for the next cycle, not dropped
    _wait_for(lambda: client.stats.traces.retained == 1)
    assert sum(client.stats.traces.dropped.values()) == 0
    assert client.flush(10)  # an explicit flush retries at once
    assert len(server.spans()) == 1


def test_submit_from_many_threads_loses_nothing(make_client, server):
    client = make_client(traces=TracesConfig(max_batch_size=50))
    threads = [
        threading.Thread(
            target=lambda t=t: [client.traces.submit(_span(t * 100 + i)) for i in range(100)]
        )
        for t in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(10)
    assert len({s["spanId"] for s in server.spans()}) == 400
    assert client.stats.traces.sent == 400 and client.stats.traces.attempted == 400


def test_traces_stats_add_up(make_client, server):
    client = make_client(traces=TracesConfig(before_send=lambda s: s if s["name"] else None))
    client.traces.submit(_span(0))
    client.traces.submit(_span(1, name=""))  # the hook drops it
    client.traces.submit(_span(2, trace_id="bad"))
    client.traces.drop("live_limit")
    assert client.flush(5)
    stats = client.stats.traces
    pre = sum(stats.dropped[r] for r in PRE_QUEUE_DROPS)
    post = sum(stats.dropped[r] for r in POST_QUEUE_DROPS)
    assert stats.attempted == stats.enqueued + pre == 4
    assert stats.enqueued == stats.sent + stats.queued + stats.in_flight + post == 1
    assert stats.traces is None and client.stats.logs.attempted == 0


# ------------------------------------------------------------------ independence of lanes


def test_the_traces_thread_starts_with_the_first_span():
    before = set(threading.enumerate())
    with FakePostHog() as server:
        client = posthog_otel.Client(API_KEY, host=server.url, flush_interval=60, traces=True)
        try:
            client.capture("e", "u1")
            client.capture_log("log")
            assert started_threads(before, "posthog_otel-traces") == []
            client.traces.submit(_span())
            assert len(started_threads(before, "posthog_otel-traces")) == 1
        finally:
            client.close(2)


def test_a_held_traces_endpoint_delays_neither_analytics_nor_logs(make_client, server):
    client = make_client()
    release = server.hold_next(path=TRACES)
    try:
        client.traces.submit(_span())
        client.capture("signed_up", "u1")
        client.capture_log("a log")
        client.flush(0)  # starts every lane
        assert [e["event"] for e in server.wait_for_events(1, timeout=5)] == ["signed_up"]
        assert len(server.wait_for_log_records(1, timeout=5)) == 1
        assert server.spans() == []
    finally:
        release.set()
    assert client.flush(5)
    assert len(server.spans()) == 1


def test_held_analytics_and_logs_endpoints_do_not_delay_spans(make_client, server):
    client = make_client()
    releases = [server.hold_next(path="/batch"), server.hold_next(path=LOGS)]
    try:
        client.capture("e", "u1")
        client.capture_log("a log")
        client.traces.submit(_span())
        client.flush(0)
        assert client.traces.flush(5)  # the traces lane alone
        assert len(server.spans()) == 1
        assert server.events == [] and server.log_records() == []
    finally:
        for release in releases:
            release.set()
    assert client.flush(5)


def test_a_failing_traces_endpoint_leaves_analytics_delivery_untouched(make_client, server):
    client = make_client(max_retries=0)
    server.fail_next(50, status=500, path=TRACES)
    for i in range(5):
        client.traces.submit(_span(i))
        client.capture(f"e{i}", "u1")
    client.flush(5)
    assert server.event_names() == [f"e{i}" for i in range(5)]
    assert client.stats.sent == 5 and client.stats.traces.sent == 0
    assert client.stats.traces.retained == 5


def test_flush_and_close_drain_the_traces_lane(make_client, server):
    client = make_client()
    client.traces.submit(_span(0))
    assert client.flush(5)  # the global flush drains spans too
    assert len(server.spans()) == 1
    client.traces.submit(_span(1))
    assert client.close(5)
    assert [s["name"] for s in server.spans()] == ["work 0", "work 1"]
    assert client.traces.submit(_span(2)) is False
    assert client.stats.traces.dropped["closed"] == 1


def test_close_gives_up_on_a_stuck_traces_endpoint_within_its_deadline(make_client, server):
    client = make_client()
    release = server.hold_next(path=TRACES)
    try:
        client.traces.submit(_span())
        client.capture("e", "u1")
        started = time.monotonic()
        assert client.close(1.0) is False
        assert time.monotonic() - started < 3.0
        assert client.stats.traces.dropped["shutdown"] == 1
        assert server.event_names() == ["e"]
    finally:
        release.set()


def test_spans_are_flushed_at_interpreter_exit(server):
    script = textwrap.dedent(
        f"""
        import time
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        for i in range(30):
            now = time.time_ns()
            client.traces.submit({{"trace_id": {TRACE_ID!r}, "span_id": f"{{i + 1:016x}}",
                                  "name": f"exit {{i}}", "start_ns": now, "end_ns": now}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [s["name"] for s in server.spans()] == [f"exit {i}" for i in range(30)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_an_empty_traces_queue(server):
    client = posthog_otel.Client(API_KEY, host=server.url, flush_interval=60)
    try:
        client.traces.submit(_span(0, name="parent pending"))
        pid = os.fork()
        if pid == 0:  # the child: its own span only, then out without atexit
            code = 1
            try:
                client.traces.submit(_span(1, name="from child"))
                stats = client.stats.traces
                code = 0 if client.flush(10) and stats.attempted == 1 else 2
                code = code or (0 if client.stats.traces.sent == 1 else 3)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [s["name"] for s in server.spans()] == ["from child"]
        assert client.flush(5)
        assert [s["name"] for s in server.spans()] == ["from child", "parent pending"]
    finally:
        client.close(2)


def test_resource_options_mean_for_traces_what_they_mean_for_logs(make_client, server):
    """sdk-contracts §2.2 [S]: with logs already configured, ``service_name``,
    ``environment`` and ``resource_attributes`` mean the same for traces: both lanes
    send the same resource for the same options (``service.*`` stays the SDK's)."""
    options = {
        "service_name": "checkout",
        "service_version": "1.2.3",
        "environment": "prod",
        "resource_attributes": {"team": "payments", "service.name": "not-this"},
    }
    client = make_client(
        logs=posthog_otel.LogsConfig(**options), traces=posthog_otel.TracesConfig(**options)
    )
    assert client.capture_log("step")
    with client.span("job"):
        pass
    assert client.flush(10)
    (logs,) = server.wait_for_requests(1, path="/i/v1/logs")
    (traces,) = server.wait_for_requests(1, path=TRACES)
    log_resource = _attributes(logs.json["resourceLogs"][0]["resource"])
    span_resource = _attributes(traces.json["resourceSpans"][0]["resource"])
    assert log_resource == span_resource
    assert span_resource["service.name"] == {"stringValue": "checkout"}
    assert span_resource["service.version"] == {"stringValue": "1.2.3"}
    assert span_resource["deployment.environment"] == {"stringValue": "prod"}
    assert span_resource["team"] == {"stringValue": "payments"}


def test_a_flush_arriving_mid_send_joins_it_and_a_follow_up_pass_covers_later_spans(
    make_client, server
):
    """sdk-contracts §2.2 [S]: a second trigger joins the flush in progress (one request
    in flight), and spans queued after its watermark are sent by a follow-up pass
    before the joined flush returns."""
    client = make_client(flush_interval=3600)
    release = server.hold_next(path=TRACES)
    results: list[bool] = []
    try:
        client.traces.submit(_span(0, name="before the watermark"))
        first = threading.Thread(target=lambda: results.append(client.flush(10)))
        first.start()
        deadline = time.monotonic() + 10
        while client.stats.traces.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.005)  # waiting for a state, not for time: bounded
        assert client.stats.traces.in_flight == 1
        client.traces.submit(_span(1, name="after the watermark"))
        joined = threading.Thread(target=lambda: results.append(client.flush(10)))
        joined.start()
    finally:
        release.set()
    joined.join(15)
    first.join(15)
    assert results == [True, True]
    names = [span["name"] for span in server.spans()]
    assert names == ["before the watermark", "after the watermark"]
    assert len(server.wait_for_requests(2, path=TRACES)) == 2  # the held one, the follow-up


def test_an_oversize_span_is_named_in_its_warning(make_client, server, warnings_log):
    """The drop warning names the span by its name (it said ``None``: the engine looked
    for an analytics event's name)."""
    client = make_client()
    client.traces.submit(_span(attributes={"blob": "x" * (2 * 1024 * 1024)}))
    client.flush(5)
    assert client.stats.traces.dropped["oversize"] == 1
    # The warning is logged by the lane's thread right after it counts the drop.
    _wait_for(lambda: any("span 'work 0' is " in r.getMessage() for r in warnings_log.records))
