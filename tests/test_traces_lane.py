"""The traces lane (issue #14, groundwork): OTLP spans to the fake server's
``/i/v1/traces`` on the batching engine (sdk-contracts §2.2: TRC-16…19, TRC-25), and
the fake server's own checks of OTLP requests."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from posthog_otel._stats import StatsRecorder
from posthog_otel.export import BatchExporter, ExporterConfig, HttpTransport, TracesLane
from tests.conftest import API_KEY

TRACES = "/i/v1/traces"


def _span(i: int) -> dict:
    now = time.time_ns()
    return {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": f"{i + 1:016x}",
        "name": f"work {i}",
        "kind": "server",
        "start_ns": now,
        "end_ns": now + 1_000,
        "attributes": {"i": i},
        "events": [],
    }


@pytest.fixture
def lane_exporter(server) -> Iterator[tuple[BatchExporter, StatsRecorder]]:
    stats = StatsRecorder()
    lane = TracesLane(API_KEY, gzip=True, resource={}, scope_name="t", scope_version="1")
    config = ExporterConfig(flush_interval=60, max_queue_size=30, max_retries=1)
    exporter = BatchExporter(lane, HttpTransport(server.url, user_agent="t"), config, stats=stats)
    yield exporter, stats
    exporter.close(2)


def test_twenty_spans_are_one_request_with_bearer_and_gzip(server, lane_exporter):
    exporter, stats = lane_exporter
    for i in range(20):
        assert exporter.submit(_span(i))
    assert exporter.flush(5)
    (request,) = server.wait_for_requests(1, path=TRACES)
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-encoding"] == "gzip" and request.query == {}
    (resource_spans,) = request.json["resourceSpans"]
    (scope_spans,) = resource_spans["scopeSpans"]
    assert [s["name"] for s in scope_spans["spans"]] == [f"work {i}" for i in range(20)]
    assert len(server.spans()) == 20 and stats.sent == 20


@pytest.mark.parametrize("status", [400, 401, 403])
def test_other_4xx_drop_the_batch(server, lane_exporter, status):
    exporter, stats = lane_exporter
    for i in range(4):
        exporter.submit(_span(i))
    server.fail_next(1, status=status, path=TRACES)
    assert exporter.flush(5) is False
    assert len(server.wait_for_requests(1, path=TRACES)) == 1
    assert stats.dropped["rejected"] == 4 and stats.retries == 0


def test_a_413_halves_and_a_single_span_413_is_dropped(server, lane_exporter):
    exporter, stats = lane_exporter
    for i in range(4):
        exporter.submit(_span(i))
    server.fail_next(2, status=413, path=TRACES)  # the batch of 4, then its first half
    assert exporter.flush(5)
    # 4 refused, its first half of 2 refused, then 1 + 1, then the second half of 2.
    assert [len(r.spans) for r in server.wait_for_requests(5, path=TRACES)] == [0, 0, 1, 1, 2]
    assert stats.dropped["oversize"] == 0
    exporter.submit(_span(9))
    server.fail_next(1, status=413, path=TRACES)
    assert exporter.flush(5) is False
    assert stats.dropped["oversize"] == 1


def test_on_overflow_the_incoming_span_is_dropped(server, lane_exporter):
    # TRC-19: the opposite of the logs rule: spans already queued are never evicted.
    exporter, stats = lane_exporter
    results = [exporter.submit(_span(i)) for i in range(31)]
    assert results == [True] * 30 + [False]
    assert stats.dropped["queue_full"] == 1 and stats.dropped["evicted"] == 0
    assert exporter.flush(5)
    assert [s["name"] for s in server.wait_for_spans(30)][-1] == "work 29"


def test_a_span_that_cannot_be_encoded_is_dropped_alone(server, lane_exporter):
    exporter, stats = lane_exporter
    exporter.submit(_span(0) | {"trace_id": "0" * 32})
    exporter.submit(_span(1))
    assert exporter.flush(5) is False  # one of them was dropped
    assert [s["name"] for s in server.wait_for_spans(1)] == ["work 1"]
    assert stats.dropped["serialization"] == 1


def _post(server, path: str, payload: object, **headers: str) -> httpx.Response:
    body = gzip.compress(json.dumps(payload).encode())
    headers = {"Content-Encoding": "gzip", **headers}
    return httpx.post(f"{server.url}{path}", content=body, headers=headers)


def test_the_fake_server_checks_otlp_requests(server):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    good = {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [
                    {
                        "scope": {"name": "t"},
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "ok",
                                "kind": 1,
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                            }
                        ],
                    }
                ],
            }
        ]
    }
    assert _post(server, TRACES, good, **auth).status_code == 200
    assert _post(server, TRACES, good).status_code == 401
    spans = good["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for bad in (
        {"traceId": "0" * 32},
        {"spanId": "B7AD6B7169203331"},
        {"endTimeUnixNano": "0"},
        {"startTimeUnixNano": 1},
        {"kind": 7},
        {"attributes": [{"key": "k", "value": {"intValue": 5}}]},
    ):
        payload = json.loads(json.dumps(good))
        payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0].update(bad)
        assert _post(server, TRACES, payload, **auth).status_code == 400, bad
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {}}]}]}]}
    assert _post(server, "/i/v1/logs", logs, **auth).status_code == 400
    assert [s["name"] for s in server.spans()] == ["ok"] and spans[0]["name"] == "ok"


def test_the_fake_server_refuses_otlp_bodies_over_2mb(server):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    record = {
        "timeUnixNano": "1",
        "observedTimeUnixNano": "1",
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "x" * 2_100_000},
    }
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    assert _post(server, "/i/v1/logs", logs, **auth).status_code == 413
    assert server.log_records() == []
