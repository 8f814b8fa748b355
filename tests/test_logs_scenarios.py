"""PostHog Logs: the [S] scenarios of sdk-contracts §2.1, one test each, in the order the
contract lists them, named after the scenario.

Scenarios an existing test already covers exactly are not repeated here:

- batch of 50 gets 413 → retried in batches of about 25:
  ``test_logs.py::test_a_413_halves_the_batch``
- single-record batch gets 413 → dropped with a warning:
  ``test_logs.py::test_a_single_record_refused_with_413_is_dropped_with_a_warning``
- a 400 → batch dropped, no endless retry:
  ``test_logs.py::test_a_400_drops_the_batch_without_retrying_or_halving``
- full queue, new record → the oldest dropped with a warning:
  ``test_logs.py::test_on_overflow_the_oldest_record_is_dropped_with_a_warning``
- shutdown with buffered logs → sent within a bounded time:
  ``test_logs.py::test_close_gives_up_on_a_stuck_logs_endpoint_within_its_deadline``
  and ``test_logs.py::test_log_records_are_flushed_at_interpreter_exit``
- ``maxLogs`` reached → later records dropped, one warning per window; ``beforeSend``
  drops use no budget: ``test_logs_options.py::``
  ``test_the_rate_cap_drops_later_records_counted_with_one_warning``
- ``beforeSend`` raises → nothing propagates, the record goes on unchanged:
  ``test_logs_options.py::test_a_raising_hook_lets_the_record_through_counted_and_warned``
- a body over 2 MB → the server answers 413 and the SDK shrinks the batch:
  ``test_logs.py::test_the_real_2mb_cap_makes_the_lane_split``
- two logs in the same millisecond → strictly increasing ``timeUnixNano``:
  ``test_logs.py::test_logs_in_the_same_millisecond_get_strictly_increasing_times``

Not applicable to a server SDK (no such platform event), so not tested: a mobile app
going to background; web page unload. "Given persisted records and a restart" is the
documented in-memory exception of LOG-20 (README "Logs"): its test checks the
documentation says so. ``reset()``: this SDK has no global identity to reset (identity
is per call or per ``context()``), so its test checks that leaving an identity context
keeps the queued records and their identity.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import posthog_otel
from posthog_otel import Client, LogsConfig
from tests.conftest import API_KEY

LOGS = "/i/v1/logs"
ROOT = Path(__file__).resolve().parent.parent


def _attributes(record: dict[str, Any]) -> dict[str, Any]:
    return {kv["key"]: kv["value"] for kv in record.get("attributes", [])}


def _one(client: Client, server: Any) -> dict[str, Any]:
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    return record


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# ---------------------------------------------------------------- API and gating


def test_given_level_error_one_record_with_severity_17_and_that_body_is_queued(make_client, server):
    client = make_client()
    assert client.capture_log(body="checkout failed", level="error") is True
    record = _one(client, server)
    assert record["severityNumber"] == 17 and record["body"] == {"stringValue": "checkout failed"}


def test_given_logger_info_the_record_equals_a_capture_log_with_level_info(make_client, server):
    client = make_client()
    client.logger.info("ready", {"region": "us"})
    client.capture_log("ready", level="info", attributes={"region": "us"})
    assert client.flush(5)
    via_logger, via_capture = server.wait_for_log_records(2)
    for record in (via_logger, via_capture):
        record.pop("timeUnixNano"), record.pop("observedTimeUnixNano")
    assert via_logger == via_capture
    assert _attributes(via_logger) == {"region": {"stringValue": "us"}}


def test_given_no_level_severity_number_is_9(make_client, server):
    client = make_client()
    client.capture_log("no level")
    record = _one(client, server)
    assert record["severityNumber"] == 9 and record["severityText"] == "INFO"


def test_given_the_sdk_is_still_initializing_a_logger_helper_does_nothing_and_raises_nothing(
    server, monkeypatch
):
    """The Python reading of "not ready": a client without a project key (the default
    client before ``POSTHOG_API_KEY`` is set) is disabled; its helpers return ``False``."""
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.delenv("POSTHOG_PROJECT_API_KEY", raising=False)
    client = Client(host=server.url)
    try:
        for helper in ("trace", "debug", "info", "warn", "error", "fatal"):
            assert getattr(client.logger, helper)("early", {"k": 1}) is False
        assert client.flush(1)
    finally:
        client.close(1)
    assert server.log_records() == [] and server.requests == []


def test_given_an_opted_out_user_capture_log_queues_nothing_and_raises_nothing(make_client, server):
    client = make_client()
    client.opt_out()
    assert client.capture_log(body="x") is False
    assert client.flush(5)
    assert client.stats.logs.enqueued == 0 and client.stats.logs.dropped["opted_out"] == 1
    assert server.log_records() == []


def test_given_a_blank_body_the_record_is_dropped_as_empty(make_client, server):
    client = make_client()
    assert client.capture_log("   ") is False
    assert client.stats.logs.dropped["invalid"] == 1 and client.stats.logs.enqueued == 0


def test_given_a_disabled_sdk_capture_log_returns_before_before_send_or_the_rate_cap(
    make_client, server
):
    seen: list[dict[str, Any]] = []
    logs = LogsConfig(before_send=lambda r: seen.append(r) or r, max_logs=1)
    client = make_client(disabled=True, logs=logs)
    assert [client.capture_log(f"r{i}") for i in range(3)] == [False, False, False]
    assert seen == []
    stats = client.stats.logs
    assert stats.dropped["disabled"] == 3 and stats.dropped["rate_limited"] == 0


# ---------------------------------------------------------------- severity


def test_given_a_warn_log_severity_number_is_13_and_text_warn(make_client, server):
    client = make_client()
    client.logger.warn("careful")
    record = _one(client, server)
    assert (record["severityNumber"], record["severityText"]) == (13, "WARN")


def test_given_an_unrecognized_level_severity_number_is_9(make_client, server):
    client = make_client()
    client.capture_log("odd", level="verbose-ish")
    assert _one(client, server)["severityNumber"] == 9


def test_given_severity_17_with_text_info_the_number_wins(make_client, server):
    """The server re-derives the text from the number (LOG-08); on our side the number
    is what a record carries (positive, never rewritten by its text) and the text is
    sent upper case."""
    client = make_client()
    client.capture_log("mixed", level="info", severity_number=17)
    record = _one(client, server)
    assert record["severityNumber"] == 17 and record["severityText"] == "INFO"


# ---------------------------------------------------------------- record shape


def test_given_capture_at_t1_and_flush_at_t2_time_unix_nano_is_t1(make_client, server):
    client = make_client()
    before = time.time_ns() // 1_000_000 * 1_000_000
    client.capture_log("t1")
    t1 = time.time_ns()
    while time.time_ns() < t1 + 3_000_000:  # flush a few milliseconds later (T2)
        pass
    record = _one(client, server)
    assert before <= int(record["timeUnixNano"]) <= t1
    assert record["observedTimeUnixNano"] == record["timeUnixNano"]


def test_given_trace_flags_0_the_wire_has_flags_0_and_without_them_flags_is_absent(
    make_client, server
):
    client = make_client()
    client.capture_log("zero", trace_id="1" * 32, span_id="2" * 16, trace_flags=0)
    client.capture_log("none", trace_id="1" * 32, span_id="2" * 16)
    assert client.flush(5)
    zero, none = server.wait_for_log_records(2)
    assert zero["flags"] == 0
    assert "flags" not in none


def test_given_no_trace_id_trace_id_is_not_on_the_wire(make_client, server):
    client = make_client()
    client.capture_log("untraced")
    record = _one(client, server)
    assert "traceId" not in record and "spanId" not in record


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (4999, {"intValue": "4999"}),
        ({"inner": 1}, {"kvlistValue": {"values": [{"key": "inner", "value": {"intValue": "1"}}]}}),
        (math.nan, {"stringValue": "NaN"}),
        (None, None),
    ],
    ids=["int", "dict", "nan", "none"],
)
def test_given_typed_attributes_they_are_encoded_by_runtime_type(
    make_client, server, value, encoded
):
    client = make_client()
    client.capture_log("typed", attributes={"a": value})
    attributes = _attributes(_one(client, server))
    if encoded is None:
        assert "a" not in attributes
    else:
        assert attributes["a"] == encoded


def test_given_distinct_id_a_changing_to_b_before_sending_the_record_keeps_a(make_client, server):
    client = make_client()
    with posthog_otel.context(distinct_id="a"):
        client.capture_log("as a")
    with posthog_otel.context(distinct_id="b"):
        record = _one(client, server)
    assert _attributes(record)["posthogDistinctId"] == {"stringValue": "a"}


def test_given_no_active_session_there_is_no_session_id_attribute(make_client, server):
    client = make_client()
    with posthog_otel.context(distinct_id="u1"):
        client.capture_log("no session")
    assert "sessionId" not in _attributes(_one(client, server))


def test_given_a_user_attribute_session_id_custom_the_record_has_custom(make_client, server):
    client = make_client()
    with posthog_otel.context(distinct_id="u1", session_id="auto"):
        client.capture_log("custom", attributes={"sessionId": "custom"})
    assert _attributes(_one(client, server))["sessionId"] == {"stringValue": "custom"}


def test_given_resource_service_name_evil_the_resolved_name_checkout_is_sent(make_client, server):
    logs = LogsConfig(service_name="checkout", resource_attributes={"service.name": "evil"})
    client = make_client(logs=logs)
    client.capture_log("named")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    resource = _attributes(request.json["resourceLogs"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "checkout"}


def test_given_this_sdk_and_version_the_scope_is_its_name_and_version(make_client, server):
    client = make_client()
    client.capture_log("scoped")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    scope = request.json["resourceLogs"][0]["scopeLogs"][0]["scope"]
    assert scope == {"name": "posthog-otel", "version": posthog_otel.__version__}


# ---------------------------------------------------------------- transport


def test_given_a_host_with_a_trailing_slash_and_a_key_the_post_goes_to_i_v1_logs_with_the_token(
    make_client, server
):
    client = make_client(host=server.url + "/", api_key="phc_abc+/=")
    client.capture_log("routed")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    assert request.path == LOGS
    assert request.query == {"token": ["phc_abc+/="]}  # url-encoded: a bare "+" is a space


def test_given_a_200_reply_the_sent_records_leave_the_queue(make_client, server):
    client = make_client()
    for i in range(3):
        client.capture_log(f"r{i}")
    assert client.flush(5)
    stats = client.stats.logs
    assert stats.sent == 3 and stats.queued == 0 and stats.in_flight == 0


def test_given_a_batch_of_20_there_is_one_scope_logs_with_20_records(make_client, server):
    client = make_client()
    for i in range(20):
        client.capture_log(f"r{i}")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    (resource_logs,) = request.json["resourceLogs"]
    (scope_logs,) = resource_logs["scopeLogs"]
    assert len(scope_logs["logRecords"]) == 20


@pytest.mark.parametrize("gzip", [True, False])
def test_given_gzip_the_body_is_gzipped_with_the_header_and_without_it_raw_json(
    make_client, server, gzip
):
    client = make_client(gzip=gzip)
    client.capture_log("zipped" if gzip else "raw")
    assert client.flush(5)
    (request,) = server.wait_for_requests(1, path=LOGS)
    if gzip:
        assert request.headers["content-encoding"] == "gzip"
    else:
        assert "content-encoding" not in request.headers
        json.loads(request.raw_body)
    assert request.headers["content-type"] == "application/json"


# ---------------------------------------------------------------- configuration and queue


def test_given_a_new_sdk_it_documents_its_flush_interval_buffer_size_and_rate_cap():
    """LOG-19: the defaults README "Logs" states are ``LogsConfig``'s."""
    readme = (ROOT / "README.md").read_text()
    logs = readme[readme.index("\n## Logs\n") :]
    defaults = LogsConfig()
    assert f"{defaults.max_queue_size:,} records" in logs  # buffer
    assert f"{defaults.max_batch_size} records" in logs  # per request
    assert f"{defaults.max_logs:,} records per {defaults.rate_window:g} s" in logs  # rate cap
    assert re.search(r"flush\s+interval", logs)  # the client's unless LogsConfig says


def test_given_persisted_records_and_a_restart_the_in_memory_exception_is_documented():
    """LOG-20/24: this SDK takes the contract's documented in-memory exception."""
    readme = (ROOT / "README.md").read_text()
    logs = readme[readme.index("\n## Logs\n") :]
    assert "in memory" in logs and "LOG-20" in logs


def test_given_reset_the_logs_queue_is_kept(make_client, server):
    """No ``reset()`` here: leaving and changing identity contexts keeps the queue."""
    client = make_client()
    with posthog_otel.context(distinct_id="before"):
        client.capture_log("queued")
    with posthog_otel.context(distinct_id="after"):
        client.capture_log("later")
    assert client.stats.logs.queued == 2
    assert client.flush(5)
    first, second = server.wait_for_log_records(2)
    assert _attributes(first)["posthogDistinctId"] == {"stringValue": "before"}
    assert _attributes(second)["posthogDistinctId"] == {"stringValue": "after"}


# ---------------------------------------------------------------- flushing


def test_given_the_interval_elapses_below_the_threshold_records_are_still_flushed(
    make_client, server
):
    client = make_client(logs=LogsConfig(flush_interval=0.2, flush_at=1000))
    client.capture_log("by the timer")
    assert server.wait_for_log_records(1, timeout=10)[0]["body"] == {"stringValue": "by the timer"}


def test_given_a_global_flush_logs_flush_along_with_events(make_client, server):
    client = make_client()
    client.capture("signed_up", "u1")
    client.capture_log("and a log")
    assert client.flush(5)
    assert server.event_names() == ["signed_up"]
    assert len(server.log_records()) == 1


class _CountingServer:
    """Answers every request 200 ``{}`` after ``delay`` seconds, recording the largest
    number of requests it was answering at once and the records of each."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.sizes: list[int] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with owner.lock:
                    owner.active += 1
                    owner.max_active = max(owner.max_active, owner.active)
                time.sleep(owner.delay)  # a slow endpoint, not synchronization
                payload = json.loads(body)
                records = payload["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                with owner.lock:
                    owner.active -= 1
                    owner.sizes.append(len(records))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_given_a_flush_in_progress_a_second_flush_joins_it_with_one_request_in_flight():
    sink = _CountingServer(delay=0.05)
    client = Client(
        API_KEY,
        host=sink.url,
        gzip=False,
        flush_interval=60,
        logs=LogsConfig(max_batch_size=5, flush_at=1000),
    )
    try:
        for i in range(30):
            client.capture_log(f"r{i}")
        results: list[bool] = []
        threads = [
            threading.Thread(target=lambda: results.append(client.flush(10))) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert results == [True] * 4
        assert sink.max_active == 1
        assert sum(sink.sizes) == 30 and max(sink.sizes) <= 5
    finally:
        client.close(2)
        sink.stop()


def test_given_records_arrive_during_a_flush_they_wait_for_the_next_cycle(make_client, server):
    client = make_client()
    release = server.hold_next(path=LOGS)
    try:
        for i in range(3):
            client.capture_log(f"first{i}")
        client.flush(0)
        _wait_for(lambda: client.stats.logs.in_flight == 3)
        for i in range(2):
            client.capture_log(f"second{i}")
    finally:
        release.set()
    assert client.flush(5)
    sizes = [len(r.log_records) for r in server.wait_for_requests(2, path=LOGS)]
    assert sizes == [3, 2]


# ---------------------------------------------------------------- hook, retries


def test_given_before_send_returns_none_the_record_is_not_queued(make_client, server):
    client = make_client(logs=LogsConfig(before_send=lambda record: None))
    assert client.capture_log("dropped by the hook") is False
    stats = client.stats.logs
    assert stats.enqueued == 0 and stats.dropped["before_send"] == 1


def test_given_backoff_in_progress_a_new_log_is_still_queued(make_client, server):
    client = make_client(max_retries=3)
    server.fail_next(1, status=503, retry_after="1", path=LOGS)
    client.capture_log("backing off")
    client.flush(0)
    _wait_for(lambda: client.stats.logs.retries == 1)  # sleeping before its retry
    assert client.capture_log("during backoff") is True
    assert client.flush(10)
    bodies = [r["body"]["stringValue"] for r in server.wait_for_log_records(2)]
    assert bodies == ["backing off", "during backoff"]


def test_given_capture_console_logs_off_remotely_capture_log_still_works(make_client, server):
    """LOG-05: no remote gate. The fake /flags answer says console logs are off; the
    client never waits for it and ``capture_log`` sends."""
    server.set_flags({"flags": {}, "logs": {"captureConsoleLogs": False}})
    client = make_client()
    assert client.capture_log("works anyway") is True
    assert _one(client, server)["body"] == {"stringValue": "works anyway"}


def test_given_any_response_the_sdk_never_depends_on_429_retry_after_or_quota_limited(
    make_client, server
):
    """The logs service answers 500 (never 429 or ``Retry-After``): a plain 500 is
    retried with the SDK's own backoff and the record is delivered."""
    client = make_client(max_retries=2)
    server.fail_next(1, status=500, path=LOGS)
    client.capture_log("retried on a bare 500")
    assert client.flush(10)
    assert len(server.wait_for_log_records(1)) == 1
    assert client.stats.logs.retries == 1


def test_given_a_trace_id_that_is_not_16_bytes_the_record_is_kept_without_it(make_client, server):
    """The server zeroes a bad id and keeps the record; the SDK never sends one: the
    record goes without ``traceId``/``spanId``, never dropped."""
    client = make_client()
    client.capture_log("short ids", trace_id="abc123", span_id="1234")
    record = _one(client, server)
    assert "traceId" not in record and "spanId" not in record
    assert record["body"] == {"stringValue": "short ids"}
