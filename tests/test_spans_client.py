"""The native span API on ``Client`` (issue #14, TRC-01…08 through the traces lane):
the client's tracer hands ended spans to ``client.traces`` and counts what never gets
there in ``stats.traces``, against the fake server."""

from __future__ import annotations

import inspect

from opentelemetry.sdk.trace import TracerProvider

import posthog_otel
from posthog_otel import Client, TracesConfig
from posthog_otel._spans import Tracer


def _names(server) -> list[str]:
    return sorted(span["name"] for span in server.spans())


def test_client_spans_reach_the_traces_lane(server, make_client):
    client = make_client(traces=True)
    with posthog_otel.context(distinct_id="u1", session_id="s1"), client.span("checkout") as span:
        span.set_attribute("cart.items", 3)
        client.start_span("charge").end()
    assert client.flush(5)
    assert _names(server) == ["charge", "checkout"]
    checkout = next(s for s in server.spans() if s["name"] == "checkout")
    keys = {a["key"]: a["value"] for a in checkout["attributes"]}
    assert keys["posthogDistinctId"] == {"stringValue": "u1"}
    assert keys["sessionId"] == {"stringValue": "s1"}
    assert client.stats.traces.sent == 2 and client.stats.traces.attempted == 2


def test_without_traces_every_handle_is_a_no_op(server, make_client):
    """TRC-04/28: tracing is off until a traces config is given; the OpenTelemetry
    exporters' lane is there all the same."""
    client = make_client()
    with client.span("x") as span:
        assert span.traceparent() is None and client.get_active_span() is None
    assert client.start_span("y").traceparent() is None
    assert client.flush(5) and server.spans() == []
    assert client.stats.traces.attempted == 0


def test_a_disabled_or_opted_out_client_hands_out_no_ops(server, make_client):
    disabled = Client(None, traces=True)
    assert disabled.start_span("x").traceparent() is None
    disabled.close()
    client = make_client(traces=True)
    client.opt_out()
    client.start_span("after opt out").end()
    assert client.flush(5) and server.spans() == []


def test_the_live_span_limit_is_counted_in_the_lanes_stats(server, make_client):
    client = make_client(traces=TracesConfig(max_live_spans=2))
    handles = [client.start_span(f"s{i}") for i in range(3)]
    assert handles[2].traceparent() is None  # the third is refused
    for handle in handles:
        handle.end()
    assert client.flush(5) and _names(server) == ["s0", "s1"]
    stats = client.stats.traces
    assert stats.dropped["live_limit"] == 1
    assert stats.attempted == stats.enqueued + stats.dropped["live_limit"]


def test_close_discards_live_spans_and_counts_them(server, make_client):
    """TRC-24: a span still open at close() is not ended with a made-up time."""
    client = make_client(traces=True)
    client.start_span("never ended")
    client.start_span("ended").end()
    client.close(5)
    assert _names(server) == ["ended"]
    stats = client.stats.traces
    assert stats.dropped["closed"] == 1 and stats.sent == 1
    assert stats.attempted == stats.enqueued + stats.dropped["closed"]


def test_a_log_inside_a_native_span_carries_its_ids(server, make_client):
    """LOG-32/TRC-17: the client's logs take the innermost span's ids from its tracer."""
    client = make_client(traces=True)
    with client.span("job") as span:
        client.capture_log("working")
    assert client.flush(5)
    (record,) = server.log_records()
    (sent,) = server.spans()
    assert (record["traceId"], record["spanId"]) == (sent["traceId"], sent["spanId"])
    assert span.trace_id == sent["traceId"]


def test_a_native_span_inside_an_otel_span_continues_its_trace(server, make_client):
    client = make_client(traces=True)
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("otel parent") as parent:
        client.start_span("native child").end()
    assert client.flush(5)
    (sent,) = server.spans()
    context = parent.get_span_context()
    assert sent["traceId"] == f"{context.trace_id:032x}"
    assert sent["parentSpanId"] == f"{context.span_id:016x}"


def test_the_client_methods_take_the_tracers_parameters():
    for name in ("start_span", "span", "with_span"):
        ours = list(inspect.signature(getattr(Client, name)).parameters)[1:]
        theirs = list(inspect.signature(getattr(Tracer, name)).parameters)[1:]
        assert ours == theirs, name
