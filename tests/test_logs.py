"""PostHog Logs (issue #14): ``client.capture_log`` and the logs lane, against the fake
server's ``/i/v1/logs`` (sdk-contracts §2.1: the LOG-xx scenarios named in each test)."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import posthog_otel
from posthog_otel._stats import StatsRecorder
from posthog_otel.export import (
    BatchExporter,
    ExporterConfig,
    HttpTransport,
    LogsLane,
)
from posthog_otel.testing import FakePostHog
from tests.conftest import API_KEY, started_threads

LOGS = "/i/v1/logs"


def _bodies(records):
    return [r["body"]["stringValue"] for r in records]


def _attributes(record):
    return {kv["key"]: kv["value"] for kv in record["attributes"]}


# ---------------------------------------------------------------- API, gating, severity


@pytest.mark.parametrize(
    ("level", "number", "text"),
    [
        ("trace", 1, "TRACE"),
        ("debug", 5, "DEBUG"),
        ("info", 9, "INFO"),
        ("warn", 13, "WARN"),
        ("WARNING", 13, "WARN"),
        ("error", 17, "ERROR"),
        ("fatal", 21, "FATAL"),
        (None, 9, "INFO"),  # LOG-02
        ("loud", 9, "INFO"),  # LOG-07
        (logging.ERROR, 17, "ERROR"),
        (logging.CRITICAL, 21, "FATAL"),
        (15, 9, "INFO"),
    ],
)
def test_levels_map_to_the_contract_severities(make_client, server, level, number, text):
    # LOG-06/07/08: a positive number, upper-case text.
    client = make_client()
    assert client.capture_log("checkout failed", level=level) is True
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    assert record["severityNumber"] == number and record["severityText"] == text
    assert record["body"] == {"stringValue": "checkout failed"}


def test_blank_bodies_opt_out_and_disabled_drop_without_raising(make_client, server):
    # LOG-04 gates, each counted in stats.logs; nothing reaches the server.
    client = make_client()
    assert client.capture_log("   ") is False
    assert client.capture_log(None) is False  # type: ignore[arg-type]
    client.opt_out()
    assert client.capture_log("x") is False
    client.opt_in()
    disabled = make_client(disabled=True)
    assert disabled.capture_log("x") is False
    assert client.flush(5) and disabled.flush(5)
    assert server.log_records() == []
    assert client.stats.logs.dropped["invalid"] == 2
    assert client.stats.logs.dropped["opted_out"] == 1
    assert disabled.stats.logs.dropped["disabled"] == 1
    assert client.stats.logs.attempted == 3 and client.stats.logs.enqueued == 0
    assert client.stats.dropped["invalid"] == 0  # the analytics counters are untouched


def test_attributes_that_are_not_a_mapping_are_dropped_not_raised(make_client):
    client = make_client()
    assert client.capture_log("x", attributes=[1, 2]) is False  # type: ignore[arg-type]
    assert client.stats.logs.dropped["invalid"] == 1


# ---------------------------------------------------------------- record shape


def test_time_is_taken_at_capture_not_at_flush(make_client, server):
    # LOG-10/12: milliseconds x 1e6 as a string, observedTimeUnixNano equal to it.
    client = make_client()
    before = time.time_ns() // 1_000_000 * 1_000_000
    client.capture_log("t1")
    after = time.time_ns()
    while time.time_ns() < after + 5_000_000:  # flush in a later millisecond
        pass
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    assert isinstance(record["timeUnixNano"], str)
    assert before <= int(record["timeUnixNano"]) <= after
    assert record["observedTimeUnixNano"] == record["timeUnixNano"]


def test_logs_in_the_same_millisecond_get_strictly_increasing_times(make_client, server):
    client = make_client()
    for i in range(50):
        client.capture_log(f"r{i}")
    assert client.flush(5)
    records = server.wait_for_log_records(50)
    times = [int(r["timeUnixNano"]) for r in records]
    assert _bodies(records) == [f"r{i}" for i in range(50)]
    assert all(a < b for a, b in itertools.pairwise(times))


def test_trace_ids_flags_and_typed_attributes_on_the_wire(make_client, server):
    # LOG-11/13 through the whole path.
    client = make_client()
    client.capture_log(
        "with ids",
        attributes={"n": 4999, "d": {"inner": 1}, "nan": float("nan"), "gone": None},
        trace_id="0AF7651916CD43DD8448EB211C80319C",
        span_id="b7ad6b7169203331",
        trace_flags=0,
    )
    client.capture_log("without ids", trace_id="not-hex", span_id=12)
    assert client.flush(5)
    first, second = server.wait_for_log_records(2)
    assert first["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert first["spanId"] == "b7ad6b7169203331"
    assert first["flags"] == 0
    assert _attributes(first) == {
        "n": {"intValue": "4999"},
        "d": {"kvlistValue": {"values": [{"key": "inner", "value": {"intValue": "1"}}]}},
        "nan": {"stringValue": "NaN"},
    }
    assert "traceId" not in second and "flags" not in second
    assert second["spanId"] == "000000000000000c"


def test_identity_is_taken_at_capture_time(make_client, server):
    # LOG-14: "a" stays "a" after the context changes; no session, no sessionId; the
    # user's sessionId wins.
    client = make_client()
    with posthog_otel.context(distinct_id="a"):
        client.capture_log("first")
    with posthog_otel.context(distinct_id="b", session_id="s-b"):
        client.capture_log("second", attributes={"sessionId": "custom"})
    client.capture_log("outside")
    assert client.flush(5)
    first, second, outside = map(_attributes, server.wait_for_log_records(3))
    assert first == {"posthogDistinctId": {"stringValue": "a"}}
    assert second == {
        "posthogDistinctId": {"stringValue": "b"},
        "sessionId": {"stringValue": "custom"},
    }
    assert outside == {}


def test_values_are_copied_at_capture_time(make_client, server):
    # LOG-21: the queue holds the record as it was; a later mutation changes nothing.
    client = make_client()
    items = ["a"]
    nested = {"items": items}
    client.capture_log("snapshot", attributes={"nested": nested, "items": items})
    items.append("b")
    nested["late"] = True
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    one = {"arrayValue": {"values": [{"stringValue": "a"}]}}
    assert _attributes(record) == {
        "nested": {"kvlistValue": {"values": [{"key": "items", "value": one}]}},
        "items": one,
    }


def test_the_active_opentelemetry_span_ids_are_copied_in(make_client, server):
    # LOG-32
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    client = make_client()
    with tracer.start_as_current_span("work") as span:
        client.capture_log("inside")
        client.capture_log("explicit", trace_id="1" * 32, span_id="2" * 16)
    context = span.get_span_context()
    assert client.flush(5)
    inside, explicit = server.wait_for_log_records(2)
    assert inside["traceId"] == f"{context.trace_id:032x}"
    assert inside["spanId"] == f"{context.span_id:016x}"
    assert (explicit["traceId"], explicit["spanId"]) == ("1" * 32, "2" * 16)


# ---------------------------------------------------------------- transport


def test_one_request_per_batch_to_the_logs_path_with_token_and_gzip(make_client, server):
    # LOG-16/17/18: 20 records, one resourceLogs[0].scopeLogs[0] of 20.
    client = make_client()
    for i in range(20):
        client.capture_log(f"r{i}")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    assert request.query == {"token": [API_KEY]}
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    (resource_logs,) = request.json["resourceLogs"]
    (scope_logs,) = resource_logs["scopeLogs"]
    assert len(scope_logs["logRecords"]) == 20
    assert scope_logs["scope"]["name"] == "posthog-otel"
    resource = {kv["key"]: kv["value"] for kv in resource_logs["resource"]["attributes"]}
    assert resource["telemetry.sdk.name"] == {"stringValue": "posthog-otel"}
    assert "telemetry.sdk.version" in resource and "service.name" in resource
    assert client.stats.logs.sent == 20 and client.stats.sent == 0


def test_without_gzip_the_body_is_plain_json(make_client, server):
    client = make_client(gzip=False)
    client.capture_log("plain")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    assert "content-encoding" not in request.headers
    assert request.raw_body.startswith(b'{"resourceLogs"')


def test_a_413_halves_the_batch(make_client, server):
    # LOG-30: a batch of 50 refused with 413 is resent as two of 25.
    client = make_client()
    for i in range(50):
        client.capture_log(f"r{i}")
    server.fail_next(1, status=413, path=LOGS)
    assert client.flush(5)
    sizes = [len(r.log_records) for r in server.wait_for_requests(3, path=LOGS)]
    assert sizes == [0, 25, 25]
    assert _bodies(server.log_records()) == [f"r{i}" for i in range(50)]


def test_after_a_413_the_batch_size_grows_back_by_one_per_healthy_send(make_client, server):
    # LOG-30: the halved size stays, and each delivered request adds one back up to
    # max_batch_size: 50 refused, 25 + 25 delivered (the cap is now 27), then 27 + 23.
    client = make_client()
    for i in range(50):
        client.capture_log(f"a{i}")
    server.fail_next(1, status=413, path=LOGS)
    assert client.flush(5)
    for i in range(50):
        client.capture_log(f"b{i}")
    assert client.flush(5)
    sizes = [len(r.log_records) for r in server.wait_for_requests(5, path=LOGS)]
    assert sizes == [0, 25, 25, 27, 23]
    assert len(server.log_records()) == 100


def test_the_wait_between_failed_cycles_is_capped_at_about_30_s(make_client, server, clock):
    # LOG-30: exponential backoff capped at ~30 s, between delivery cycles too (the
    # analytics lane waits 30 s doubling to 5 min): the third attempt comes 30 s after
    # the second failed, not 60 s.
    client = make_client(_clock=clock, max_retries=0, max_retry_cycles=10)
    server.fail_next(2, status=503, path=LOGS)
    client.capture_log("patient")
    assert client.flush(5) is False
    for attempt in (2, 3):
        clock.advance(31.0)
        if attempt == 2:
            server.wait_for_requests(2, path=LOGS)
            _wait_for(lambda: client.stats.logs.retained == 1 and client.stats.logs.in_flight == 0)
    assert _bodies(server.wait_for_log_records(1, timeout=5)) == ["patient"]


def test_a_single_record_refused_with_413_is_dropped_with_a_warning(
    make_client, server, warnings_log
):
    client = make_client()
    client.capture_log("alone")
    server.fail_next(1, status=413, path=LOGS)
    assert client.flush(5) is False
    assert client.stats.logs.dropped["oversize"] == 1
    client.close(5)  # joins the flush thread, which warns after settling the drop
    assert "oversize" in warnings_log.text
    assert len(server.wait_for_requests(1, path=LOGS)) == 1


def test_the_real_2mb_cap_makes_the_lane_split(server):
    # LOG-31: the fake server answers 413 above 2 MB (decompressed); with a smaller cap
    # here, the lane's halving gets every record through.
    with FakePostHog(max_otlp_body_bytes=40_000) as strict:
        client = posthog_otel.Client(API_KEY, host=strict.url, flush_interval=60, gzip=False)
        try:
            for i in range(30):
                client.capture_log(f"r{i}-" + "x" * 2_000)
            assert client.flush(10)
            statuses = [r.status for r in strict.requests if r.path == LOGS]
            assert statuses[0] == 413 and statuses.count(200) >= 2
            assert len(strict.log_records()) == 30
        finally:
            client.close(2)


def test_a_400_drops_the_batch_without_retrying_or_halving(make_client, server):
    client = make_client()
    for i in range(4):
        client.capture_log(f"r{i}")
    server.fail_next(1, status=400, path=LOGS)
    assert client.flush(5) is False
    assert len(server.wait_for_requests(1, path=LOGS)) == 1
    assert client.stats.logs.dropped["rejected"] == 4
    assert client.stats.logs.retries == 0


@pytest.mark.parametrize("status", [408, 429, 503])
def test_transient_answers_are_retried_with_the_records_kept(make_client, server, status):
    client = make_client()
    client.capture_log("keep me")
    server.fail_next(1, status=status, retry_after="0", path=LOGS)
    assert client.flush(10)
    assert _bodies(server.wait_for_log_records(1)) == ["keep me"]
    assert client.stats.logs.retries == 1


# ---------------------------------------------------------------- queue and lanes


def test_on_overflow_the_oldest_record_is_dropped_with_a_warning(server, warnings_log):
    # LOG-22, on the engine the client uses (drop_oldest): a queue of 5, a request held
    # in flight, 8 more records: the 3 oldest queued ones go.
    stats = StatsRecorder()
    lane = LogsLane(API_KEY, gzip=True, resource={}, scope_name="t", scope_version="1")
    transport = HttpTransport(server.url, user_agent="test")
    config = ExporterConfig(flush_at=1, max_queue_size=5, flush_interval=60, drop_oldest=True)
    exporter = BatchExporter(lane, transport, config, stats=stats)
    release = server.hold_next(path=LOGS)
    try:
        assert exporter.submit(_plain("in flight"))
        _wait_for(lambda: exporter.counts()[2] == 1)
        for i in range(8):
            assert exporter.submit(_plain(f"r{i}"))
        assert stats.dropped["evicted"] == 3
        assert "evicted" in warnings_log.text
    finally:
        release.set()
    assert exporter.flush(5)
    assert _bodies(server.wait_for_log_records(6)) == ["in flight"] + [f"r{i}" for i in range(3, 8)]
    exporter.close(2)
    enqueued, queued, _, _ = exporter.counts()
    assert enqueued == 9 and queued == 0 and stats.sent + stats.dropped["evicted"] == 9


def test_the_engine_still_refuses_the_incoming_item_by_default(server):
    stats = StatsRecorder()
    lane = LogsLane(API_KEY, gzip=True, resource={}, scope_name="t", scope_version="1")
    config = ExporterConfig(max_queue_size=2, flush_interval=60, sync_mode=False, flush_at=100)
    exporter = BatchExporter(lane, HttpTransport(server.url, user_agent="t"), config, stats=stats)
    assert [exporter.submit(_plain(f"r{i}")) for i in range(3)] == [True, True, False]
    assert stats.dropped["queue_full"] == 1 and stats.dropped["evicted"] == 0
    assert exporter.flush(5)
    assert _bodies(server.wait_for_log_records(2)) == ["r0", "r1"]
    exporter.close(2)


def test_the_logs_thread_starts_with_the_first_record():
    before = set(threading.enumerate())
    with FakePostHog() as server:
        client = posthog_otel.Client(API_KEY, host=server.url, flush_interval=60)
        try:
            client.capture("e", "u1")
            assert started_threads(before, "posthog_otel-logs") == []
            client.capture_log("first")
            assert len(started_threads(before, "posthog_otel-logs")) == 1
        finally:
            client.close(2)


def test_a_held_logs_endpoint_does_not_delay_analytics_events(make_client, server):
    client = make_client()
    release = server.hold_next(path=LOGS)
    try:
        client.capture_log("slow")
        client.capture("signed_up", "u1")
        client.flush(0)  # starts both lanes
        assert [e["event"] for e in server.wait_for_events(1, timeout=5)] == ["signed_up"]
        assert server.log_records() == []
    finally:
        release.set()
    assert client.flush(5)
    assert _bodies(server.log_records()) == ["slow"]


def test_a_failing_logs_endpoint_leaves_analytics_delivery_untouched(make_client, server):
    client = make_client(max_retries=0)
    server.fail_next(50, status=500, path=LOGS)
    for i in range(5):
        client.capture_log(f"r{i}")
        client.capture(f"e{i}", "u1")
    client.flush(5)
    assert server.event_names() == [f"e{i}" for i in range(5)]
    assert client.stats.sent == 5 and client.stats.logs.sent == 0
    assert client.stats.logs.retained == 5


def test_flush_and_close_drain_the_logs_lane(make_client, server):
    # LOG-25 (a global flush drains logs too) and LOG-26 (close within its deadline).
    client = make_client()
    client.capture_log("by flush")
    assert client.flush(5)
    assert _bodies(server.log_records()) == ["by flush"]
    client.capture_log("by close")
    assert client.close(5)
    assert _bodies(server.log_records()) == ["by flush", "by close"]
    assert client.capture_log("after close") is False
    assert client.stats.logs.dropped["closed"] == 1


def test_close_gives_up_on_a_stuck_logs_endpoint_within_its_deadline(make_client, server):
    client = make_client()
    release = server.hold_next(path=LOGS)
    try:
        client.capture_log("stuck")
        client.capture("e", "u1")
        started = time.monotonic()
        assert client.close(1.0) is False
        assert time.monotonic() - started < 3.0
        assert client.stats.logs.dropped["shutdown"] == 1
        assert server.event_names() == ["e"]
    finally:
        release.set()


def test_log_stats_add_up(make_client, server):
    client = make_client()
    client.capture_log("a")
    client.capture_log("")
    assert client.flush(5)
    logs = client.stats.logs
    assert logs.attempted == 2 and logs.enqueued == 1 and logs.sent == 1
    assert logs.dropped["invalid"] == 1 and logs.logs is None


def _plain(body: str) -> dict:
    return {
        "time_ns": time.time_ns(),
        "severity_number": 9,
        "severity_text": "INFO",
        "body": body,
        "attributes": {},
        "trace_id": None,
        "span_id": None,
        "flags": None,
    }


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_on_error_flushing_on_the_analytics_thread_never_waits_on_the_logs_lane(
    make_client, server
):
    done = threading.Event()

    def on_error(error, events):
        client.flush(None)  # on the analytics flush thread: must not wait for logs
        done.set()

    client = make_client(on_error=on_error, max_retries=0)
    release = server.hold_next(path=LOGS)
    try:
        client.capture_log("held")
        client.flush(0)  # the logs request is now held by the server
        server.fail_next(1, status=400, path="/batch")
        client.capture("rejected", "u1")
        client.flush(0)
        assert done.wait(5)
    finally:
        release.set()


def test_log_records_are_flushed_at_interpreter_exit(server):
    # LOG-26: no flush, no close: the exit hook drains the logs lane too.
    script = textwrap.dedent(
        f"""
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        for i in range(30):
            client.capture_log(f"exit {{i}}")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _bodies(server.log_records()) == [f"exit {i}" for i in range(30)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_an_empty_logs_queue(server):
    client = posthog_otel.Client(API_KEY, host=server.url, flush_interval=60)
    try:
        client.capture_log("parent pending")
        pid = os.fork()
        if pid == 0:  # the child: its own record only, then out without atexit
            code = 1
            try:
                client.capture_log("from child")
                code = 0 if client.flush(10) and client.stats.logs.sent == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _bodies(server.log_records()) == ["from child"]
        assert client.flush(5)
        assert _bodies(server.log_records()) == ["from child", "parent pending"]
    finally:
        client.close(2)


def test_drop_and_retry_warnings_name_log_records_not_events(make_client, server, warnings_log):
    """The logs lane's warnings count *log records*: the noun is the lane's (one place,
    ``Lane.noun``), for the drops before the queue, the drops in it and the retries."""
    client = make_client(max_retries=0, max_retry_cycles=5)
    client.capture_log("   ")  # invalid: before the queue
    server.fail_next(1, status=503, path=LOGS)  # kept for a later cycle...
    server.fail_next(1, status=400, path=LOGS)  # ...which is refused
    client.capture_log("kept")
    assert client.flush(5) is False
    _wait_for(lambda: client.flush(0.5) or client.stats.logs.dropped["rejected"] == 1, 10)
    client.close(2)
    messages = [r.getMessage() for r in warnings_log.records]
    assert any(m.startswith("dropped 1 log record(s): invalid") for m in messages), messages
    assert any(m.startswith("delivery of 1 log record(s) failed") for m in messages), messages
    assert any(m.startswith("dropped 1 log record(s): rejected") for m in messages), messages
    assert not any("event(s)" in m for m in messages), messages


def test_the_traces_lane_warnings_name_spans(server, warnings_log):
    from posthog_otel.export import TracesLane

    stats = StatsRecorder()
    lane = TracesLane(API_KEY, gzip=True, resource={}, scope_name="t", scope_version="1")
    config = ExporterConfig(flush_interval=60, max_queue_size=1)
    exporter = BatchExporter(lane, HttpTransport(server.url, user_agent="t"), config, stats=stats)
    span = {"trace_id": "1" * 32, "span_id": "2" * 16, "name": "s", "start_ns": 1, "end_ns": 2}
    release = server.hold_next(path="/i/v1/traces")
    try:
        assert exporter.submit(span)
        assert exporter.submit(dict(span)) is False  # the queue holds one
    finally:
        release.set()
    exporter.close(2)
    messages = [r.getMessage() for r in warnings_log.records]
    assert any(m.startswith("dropped 1 span(s): queue_full") for m in messages), messages


def test_a_record_logged_in_a_request_carries_its_url_session_and_identity(make_client, server):
    """LOG-14 on a server: the request context the middleware sets gives
    ``posthogDistinctId``, ``sessionId`` and ``url.full`` (the web key; the query string
    left out as for events), taken when the record is captured; the caller's wins."""
    import httpx

    from posthog_otel.middleware import PostHogWSGIMiddleware

    client = make_client()

    def app(environ, start_response):
        client.capture_log("in a request")
        client.capture_log("overridden", attributes={"url.full": "custom"})
        start_response("200 OK", [])
        return [b""]

    wsgi = PostHogWSGIMiddleware(app)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://w.test") as h:
        h.get(
            "/cart?secret=1",
            headers={"X-POSTHOG-DISTINCT-ID": "u1", "X-POSTHOG-SESSION-ID": "s1"},
        )
    client.capture_log("outside")
    assert client.flush(5)
    inside, overridden, outside = map(_attributes, server.wait_for_log_records(3))
    assert inside == {
        "posthogDistinctId": {"stringValue": "u1"},
        "sessionId": {"stringValue": "s1"},
        "url.full": {"stringValue": "http://w.test/cart"},
    }
    assert overridden["url.full"] == {"stringValue": "custom"}
    assert outside == {}


@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32", reason="needs SIGTERM")
def test_sigterm_flushes_the_logs_lane_then_dies_of_the_signal(server):
    """LOG-20's in-memory queue loses nothing on a normal stop: a process that only
    logs (its first flush thread is the logs lane's) flushes its records on SIGTERM."""
    import signal

    script = textwrap.dedent(
        f"""
        import threading
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        for i in range(40):
            client.capture_log(f"before sigterm {{i}}")
        print("ready", flush=True)
        threading.Event().wait(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert _bodies(server.log_records()) == [f"before sigterm {i}" for i in range(40)]
