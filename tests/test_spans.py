"""The native span API (issue #14, item 4): sdk-contracts §2.2, TRC-01…08, 10…12, 14, 20,
24, and the [S] scenarios that concern the API, one test each (named after it).

The tracer's ``submit`` is a collector; every record it collects is encoded with the
traces lane's encoder and parsed into the real ``opentelemetry-proto`` messages, so what
the API produces is valid OTLP. Clocks are injected where a scenario is about time.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from posthog_otel import context
from posthog_otel._span import NoopSpan, Span
from posthog_otel._spans import Tracer
from posthog_otel._traces_config import TracesConfig
from posthog_otel.export._otlp import encode_span, envelope

T = "4bf92f3577b34da6a3ce929d0e0e4736"
S = "00f067aa0ba902b7"
MS = 1_000_000
HOUR = 3600 * 10**9


class Clocks:
    """Injectable clocks: a monotonic one and a wall clock, moved by the test."""

    def __init__(self) -> None:
        self.mono = 5 * HOUR
        self.wall = 1_700_000_000 * 10**9

    def monotonic_ns(self) -> int:
        return self.mono

    def time_ns(self) -> int:
        return self.wall

    def advance(self, ns: int) -> None:
        self.mono += ns
        self.wall += ns


class Sink:
    """The traces lane's side: ``submit`` collects, ``drop`` counts by reason."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.drops: list[str] = []

    def submit(self, record: dict[str, Any]) -> bool:
        self.records.append(record)
        return True

    def drop(self, reason: str) -> None:
        self.drops.append(reason)

    def wire(self) -> list[dict[str, Any]]:
        """The collected spans as sent: OTLP/JSON, checked against the real proto."""
        head, tail = envelope("traces", {"service.name": "test"}, "posthog-otel", "0")
        body = head + b",".join(encode_span(r) for r in self.records) + tail
        request = orjson.loads(body)
        spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
        converted = orjson.loads(body)
        for span in converted["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        message = trace_service_pb2.ExportTraceServiceRequest()
        json_format.ParseDict(converted, message)  # raises on anything that is not OTLP
        protos = message.resource_spans[0].scope_spans[0].spans if self.records else []
        assert len(protos) == len(spans)
        for proto in protos:
            assert len(proto.trace_id) == 16 and len(proto.span_id) == 8
            assert len(proto.parent_span_id) in (0, 8)
        return spans

    def one(self) -> dict[str, Any]:
        (span,) = self.wire()
        return span

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {span["name"]: span for span in self.wire()}


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    return {kv["key"]: kv["value"] for kv in span.get("attributes", [])}


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def make(sink: Sink) -> Callable[..., Tracer]:
    def build(
        config: TracesConfig | None = None,
        *,
        enabled: bool = True,
        opted_out: Callable[[], bool] = lambda: False,
        clocks: Clocks | None = None,
        **options: Any,
    ) -> Tracer:
        extra: dict[str, Any] = {}
        if clocks is not None:
            extra = {"monotonic_ns": clocks.monotonic_ns, "time_ns": clocks.time_ns}
        return Tracer(
            config if config is not None else TracesConfig(**options),
            sink.submit,
            sink.drop,
            enabled=enabled,
            opted_out=opted_out,
            **extra,
        )

    return build


@pytest.fixture
def tracer(make: Callable[..., Tracer]) -> Tracer:
    return make()


# ---------------------------------------------------------------- TRC-01…03: records


def test_start_span_then_end_queues_exactly_one_record_named_checkout(tracer, sink):
    span = tracer.start_span("checkout")
    assert isinstance(span, Span) and tracer.get_active_span() is None  # not activated
    span.end()
    assert [s["name"] for s in sink.wire()] == ["checkout"]


def test_end_called_twice_gives_one_record_and_the_second_call_does_nothing(tracer, sink):
    span = tracer.start_span("x")
    span.end()
    span.end()
    assert len(sink.wire()) == 1 and sink.drops == []


def test_set_attribute_after_end_is_not_in_the_record_and_nothing_raises(tracer, sink, caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    span = tracer.start_span("x")
    span.end()
    span.set_attribute("k", "v")
    span.add_event("late")
    span.set_status("error", "late")
    span.record_exception(ValueError("late"))
    span.update_name("late")
    record = sink.one()
    assert "k" not in _attributes(record) and not record.get("events")
    assert record["name"] == "x" and "status" not in record
    assert any("has ended is ignored" in r.getMessage() for r in caplog.records)


def test_renamed_to_the_route_template_before_end_the_template_is_exported(tracer, sink):
    span = tracer.start_span("HTTP request", attributes={"url.path": "/users/123"})
    span.update_name("GET /users/:id")
    span.end()
    record = sink.one()
    # SDK-style naming: the route template is the name, the variable part an attribute.
    assert record["name"] == "GET /users/:id"
    assert _attributes(record)["url.path"] == {"stringValue": "/users/123"}


def test_backdated_span_ended_with_a_valid_later_end_time_has_that_end(make, sink, clocks):
    tracer = make(clocks=clocks)
    start = clocks.wall - 10 * 60 * 10**9
    span = tracer.start_span("import", start_time=start)
    span.end(end_time=start + 5 * 10**9)
    record = sink.one()
    assert record["startTimeUnixNano"] == str(start)
    assert record["endTimeUnixNano"] == str(start + 5 * 10**9)


def test_an_invalid_end_time_falls_back_to_the_derived_end(make, sink, clocks):
    tracer = make(clocks=clocks)
    span = tracer.start_span("x")
    clocks.advance(7 * MS)
    span.end(end_time="yesterday")
    record = sink.one()
    assert int(record["endTimeUnixNano"]) - int(record["startTimeUnixNano"]) == 7 * MS


# ---------------------------------------------------------------- TRC-04: no-op handles


def test_opted_out_start_span_gives_a_noop_and_nothing_is_queued(make, sink):
    tracer = make(opted_out=lambda: True)
    span = tracer.start_span("x")
    assert isinstance(span, NoopSpan) and not span.is_recording()
    span.end()
    assert sink.records == [] and sink.drops == []


def test_a_child_of_a_noop_parent_is_a_noop_and_neither_is_queued(make, sink):
    tracer = make(max_live_spans=1)
    tracer.start_span("leaked")
    parent = tracer.start_span("refused")
    child = tracer.start_span("child", parent=parent)
    assert isinstance(parent, NoopSpan) and isinstance(child, NoopSpan)
    with tracer.span("scoped", parent=parent) as scoped:
        assert isinstance(scoped, NoopSpan)
    parent.end()
    child.end()
    assert sink.records == []


def test_a_noop_traceparent_and_tracestate_are_none(make):
    noop = make(enabled=False).start_span("x")
    assert noop.traceparent() is None and noop.tracestate() is None


def test_no_traces_config_with_span_runs_fn_once_with_a_noop_and_returns_its_result(make, sink):
    for tracer in (
        make(enabled=False),
        Tracer(None, sink.submit, sink.drop, enabled=True, opted_out=lambda: False),
    ):
        calls = []

        def job(span: Any, tracer: Tracer = tracer, calls: list[Any] = calls) -> str:
            calls.append((span, tracer.get_active_span()))
            return "result"

        assert tracer.with_span("job", job) == "result"
        ((span, active),) = calls
        assert isinstance(span, NoopSpan) and active is None
        assert not tracer.enabled
    assert sink.records == []


def test_no_traces_config_start_span_then_end_is_a_noop_and_nothing_is_exported(make, sink):
    tracer = Tracer(None, sink.submit, sink.drop, enabled=True, opted_out=lambda: False)
    span = tracer.start_span("x")
    span.set_attribute("k", 1)
    span.end()
    with tracer.span("y") as scoped:
        assert isinstance(scoped, NoopSpan)
    assert isinstance(span, NoopSpan) and sink.records == [] and sink.drops == []


def test_inside_a_noop_scope_no_span_is_active_and_new_spans_are_noops(make, sink):
    tracer = make(max_live_spans=1)
    with tracer.span("outer") as outer:
        with tracer.span("refused") as refused:  # the live limit is reached
            assert isinstance(refused, NoopSpan)
            assert tracer.get_active_span() is None
            assert isinstance(tracer.start_span("inner"), NoopSpan)
        assert tracer.get_active_span() is outer
    assert [s["name"] for s in sink.wire()] == ["outer"]


# ---------------------------------------------------------------- TRC-05: scoped helpers


def test_fn_raising_typeerror_inside_with_span_exports_an_error_and_reraises_it(tracer, sink):
    boom = TypeError("boom")

    def fail(span: Any) -> None:
        raise boom

    with pytest.raises(TypeError) as raised:
        tracer.with_span("job", fail)
    assert raised.value is boom  # the original exception, unchanged
    record = sink.one()
    assert record["status"] == {"code": 2, "message": "boom"}
    (event,) = record["events"]
    assert event["name"] == "exception"
    assert _attributes(event) == {
        "exception.type": {"stringValue": "TypeError"},
        "exception.message": {"stringValue": "boom"},
    }
    assert tracer.get_active_span() is None


def test_an_explicit_ok_is_kept_when_the_helper_records_an_exception(tracer, sink):
    def fail(span: Any) -> None:
        span.set_status("ok")
        raise ValueError("expected")

    with pytest.raises(ValueError):
        tracer.with_span("job", fail)
    record = sink.one()
    assert record["status"] == {"code": 1}
    assert [e["name"] for e in record["events"]] == ["exception"]


def test_explicit_calls_are_last_write_wins(tracer, sink):
    span = tracer.start_span("x")
    span.set_status("ok")
    span.record_exception(KeyError("k"))  # explicit: overrides ok
    span.set_status("error", "first")
    span.set_status("ok")
    span.set_status("bogus")  # ignored
    span.end()
    assert sink.one()["status"] == {"code": 1}


def test_an_awaitable_that_resolves_80_ms_later_is_covered_by_the_span(make, sink, clocks):
    tracer = make(clocks=clocks)

    async def work(span: Any) -> str:
        assert tracer.get_active_span() is span
        await asyncio.sleep(0)
        clocks.advance(80 * MS)
        return "done"

    assert asyncio.run(tracer.with_span("job", work)) == "done"
    record = sink.one()
    assert int(record["endTimeUnixNano"]) - int(record["startTimeUnixNano"]) == 80 * MS


def test_an_awaitable_on_the_real_clocks_ends_when_it_settles(tracer, sink):
    async def work(span: Any) -> str:
        await asyncio.sleep(0.08)
        return "done"

    async def main() -> str:
        result = await tracer.with_span("job", work)
        assert tracer.get_active_span() is None
        return result

    assert asyncio.run(main()) == "done"
    record = sink.one()
    assert int(record["endTimeUnixNano"]) - int(record["startTimeUnixNano"]) >= 80 * MS


def test_an_awaitable_that_raises_ends_with_an_error_when_it_settles(tracer, sink):
    async def work(span: Any) -> None:
        await asyncio.sleep(0)
        raise TypeError("boom")

    with pytest.raises(TypeError, match="boom"):
        asyncio.run(tracer.with_span("job", work))
    assert sink.one()["status"] == {"code": 2, "message": "boom"}


def test_a_task_returned_by_the_callback_is_returned_as_is_and_ends_the_span_when_done(
    tracer, sink
):
    async def work(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise ValueError("task failed")
        return "done"

    async def main() -> None:
        ok = tracer.with_span("ok", lambda span: asyncio.ensure_future(work(False)))
        failed = tracer.with_span("failed", lambda span: asyncio.ensure_future(work(True)))
        cancelled = tracer.with_span("cancelled", lambda span: asyncio.ensure_future(work(False)))
        assert isinstance(ok, asyncio.Task)  # the caller's task, not a wrapper
        cancelled.cancel()
        assert await ok == "done"
        with pytest.raises(ValueError):
            await failed
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration

    asyncio.run(main())
    spans = sink.by_name()
    assert "status" not in spans["ok"] and "status" not in spans["cancelled"]
    assert spans["failed"]["status"] == {"code": 2, "message": "task failed"}


def test_a_helper_that_succeeds_ends_with_status_unset_and_returns_the_result(tracer, sink):
    assert tracer.with_span("job", lambda span: 41 + 1) == 42
    record = sink.one()
    assert "status" not in record and record["kind"] == 1


def test_record_exception_on_a_manual_span_keeps_it_live_until_end(tracer, sink):
    span = tracer.start_span("manual")
    span.record_exception(RuntimeError("partial failure"))
    span.add_event("continued")
    assert span.is_recording() and sink.records == []
    span.end()
    record = sink.one()
    assert record["status"] == {"code": 2, "message": "partial failure"}
    assert [e["name"] for e in record["events"]] == ["exception", "continued"]


def test_with_start_span_starts_on_entry_is_active_inside_and_ends_on_leaving(tracer, sink):
    with tracer.start_span("job") as span:
        assert tracer.get_active_span() is span
        assert sink.records == []
    assert tracer.get_active_span() is None and not span.is_recording()
    assert sink.one()["name"] == "job"


def test_a_handle_used_as_a_decorator_is_active_while_the_function_runs(tracer, sink):
    handle = tracer.start_span("decorated")

    @handle
    def work() -> Any:
        return tracer.get_active_span()

    assert work() is handle
    assert sink.one()["name"] == "decorated"


def test_the_span_decorator_starts_a_span_per_call_for_sync_and_async_functions(tracer, sink):
    @tracer.span("sync", kind="server")
    def sync(x: int) -> int:
        """Documented."""
        assert tracer.get_active_span() is not None
        return x * 2

    @tracer.span("async")
    async def run(x: int) -> int:
        await asyncio.sleep(0)
        assert tracer.get_active_span() is not None
        return x + 1

    assert sync(2) == 4 and sync(3) == 6 and sync.__doc__ == "Documented."
    assert inspect.iscoroutinefunction(run)  # frameworks still see a coroutine function
    assert asyncio.run(run(1)) == 2
    names = [s["name"] for s in sink.wire()]
    assert names == ["sync", "sync", "async"]
    assert sink.wire()[0]["kind"] == 2


def test_the_span_decorator_records_and_reraises(tracer, sink):
    @tracer.span("fails")
    def fails() -> None:
        raise KeyError("missing")

    @tracer.span("fails-async")
    async def fails_async() -> None:
        raise LookupError("gone")

    with pytest.raises(KeyError):
        fails()
    with pytest.raises(LookupError):
        asyncio.run(fails_async())
    assert [s["status"]["code"] for s in sink.wire()] == [2, 2]


def test_async_with_span_and_a_cancelled_task_end_the_span_without_error(tracer, sink):
    async def main() -> None:
        async with tracer.span("outer") as outer:
            assert tracer.get_active_span() is outer
            task = asyncio.ensure_future(tracer.with_span("waits", lambda s: asyncio.sleep(10)))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    spans = sink.by_name()
    assert "status" not in spans["waits"] and "status" not in spans["outer"]


# ---------------------------------------------------------------- TRC-06…08: ids and context


def test_a_root_span_has_lowercase_hex_ids_never_all_zeros_and_no_parent(tracer, sink):
    for _ in range(50):
        tracer.start_span("root").end()
    spans = sink.wire()
    for span in spans:
        assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
        assert span["traceId"] == span["traceId"].lower() and int(span["traceId"], 16)
        assert int(span["spanId"], 16) and "parentSpanId" not in span
    assert len({s["traceId"] for s in spans}) == 50  # a new trace per root


def test_a_child_of_active_span_a_has_its_trace_and_parent_span_id(tracer, sink):
    with tracer.span("A") as a:
        tracer.start_span("B").end()
    spans = sink.by_name()
    assert spans["B"]["traceId"] == spans["A"]["traceId"] == a.trace_id
    assert spans["B"]["parentSpanId"] == spans["A"]["spanId"]


def test_start_span_while_with_span_parent_runs_has_parent_as_its_parent(tracer, sink):
    tracer.with_span("parent", lambda span: tracer.start_span("child").end())
    spans = sink.by_name()
    assert spans["child"]["parentSpanId"] == spans["parent"]["spanId"]


def test_while_manual_span_m_is_open_a_new_span_is_not_its_child(tracer, sink):
    manual = tracer.start_span("M")
    assert tracer.get_active_span() is not manual
    tracer.start_span("other").end()
    manual.end()
    spans = sink.by_name()
    assert "parentSpanId" not in spans["other"]
    assert spans["other"]["traceId"] != spans["M"]["traceId"]


def test_with_active_span_a_an_explicit_parent_b_wins(tracer, sink):
    b = tracer.start_span("B")
    with tracer.span("A"):
        tracer.start_span("child", parent=b).end()
    b.end()
    spans = sink.by_name()
    assert spans["child"]["parentSpanId"] == spans["B"]["spanId"]
    assert spans["child"]["traceId"] == spans["B"]["traceId"]


def test_with_no_helper_running_get_active_span_is_none(tracer):
    assert tracer.get_active_span() is None
    tracer.start_span("x").end()
    assert tracer.get_active_span() is None


def test_an_incoming_traceparent_as_parent_continues_its_trace(tracer, sink):
    tracer.start_span("server", parent=f"00-{T}-{S}-01").end()
    tracer.start_span("unsampled", parent=f"00-{T}-{S}-00").end()  # flags 00: continued too
    for span in sink.wire():
        assert span["traceId"] == T and span["parentSpanId"] == S
        assert span["flags"] & 1


def test_traceparent_of_a_span_is_00_trace_span_01(tracer):
    span = tracer.start_span("x", parent=f"00-{T}-{S}-00")
    assert span.traceparent() == f"00-{T}-{span.span_id}-01"
    assert tracer.start_span("y", parent=span.traceparent()).trace_id == T


def test_a_traceparent_with_tracestate_vendor_abc_is_kept_unchanged(tracer, sink):
    span = tracer.start_span("x", parent=f"00-{T}-{S}-01", tracestate="vendor=abc")
    assert span.tracestate() == "vendor=abc"
    child = tracer.start_span("child", parent=span)  # a child inherits it
    assert child.tracestate() == "vendor=abc"
    child.end()
    span.end()
    assert [s["traceState"] for s in sink.wire()] == ["vendor=abc", "vendor=abc"]
    # Without a traceparent string, tracestate is ignored; with no tracestate it is None.
    assert tracer.start_span("root", tracestate="vendor=abc").tracestate() is None


@pytest.mark.parametrize(
    "state", ["bad key=1", "a=1,a=2", "=x", "k=", "k=v\x01", "k=v,w", "x" * 600, 12]
)
def test_an_invalid_tracestate_is_discarded_and_the_traceparent_still_used(tracer, sink, state):
    tracer.start_span("x", parent=f"00-{T}-{S}-01", tracestate=state).end()
    record = sink.one()
    assert record["traceId"] == T and "traceState" not in record


@pytest.mark.parametrize(
    "parent",
    [
        "garbage",
        f"00-{'0' * 32}-{S}-01",
        f"00-{T}-{'0' * 16}-01",
        f"ff-{T}-{S}-01",
        f"00-{T}-{S}-01-extra",
        f"00-{T[:-1]}-{S}-01",
        "",
        42,
        (T, S),  # not a span nor a traceparent: never taken for ids
    ],
)
def test_parent_garbage_starts_a_new_root_without_raising(tracer, sink, parent):
    with tracer.span("active"):
        tracer.start_span("x", parent=parent).end()
    spans = sink.by_name()
    assert "parentSpanId" not in spans["x"] and spans["x"]["traceId"] != T
    assert spans["x"]["traceId"] != spans["active"]["traceId"]


def test_a_future_traceparent_version_is_read_for_its_known_fields(tracer):
    assert tracer.start_span("x", parent=f"01-{T}-{S}-01-more").trace_id == T
    assert tracer.start_span("x", parent=f" 00-{T.upper()}-{S}-01 ").trace_id == T


def test_no_kind_and_no_status_gives_kind_1_and_no_error_status(tracer, sink):
    tracer.start_span("x").end()
    tracer.start_span("y", kind="nonsense").end()
    tracer.start_span("z", kind="CONSUMER").end()
    spans = sink.by_name()
    assert spans["x"]["kind"] == 1 and "status" not in spans["x"]
    assert spans["y"]["kind"] == 1 and spans["z"]["kind"] == 5


# ---------------------------------------------------------------- TRC-10/11: clocks, validity


def test_any_span_has_string_times_end_after_start_and_a_monotonic_duration(make, sink, clocks):
    tracer = make(clocks=clocks)
    span = tracer.start_span("x")
    clocks.mono += 5 * MS
    clocks.wall += HOUR  # the wall clock jumps: the duration does not
    span.end()
    record = sink.one()
    start, end = record["startTimeUnixNano"], record["endTimeUnixNano"]
    assert isinstance(start, str) and isinstance(end, str)
    assert int(end) - int(start) == 5 * MS


def test_the_wall_clock_going_back_mid_span_keeps_the_event_inside_it(make, sink, clocks):
    tracer = make(clocks=clocks)
    span = tracer.start_span("x")
    clocks.wall -= HOUR
    clocks.mono += MS
    span.add_event("step")
    clocks.mono += MS
    span.end()
    record = sink.one()
    (event,) = record["events"]
    assert int(record["startTimeUnixNano"]) < int(event["timeUnixNano"])
    assert int(event["timeUnixNano"]) < int(record["endTimeUnixNano"])


def test_a_start_time_beyond_the_i64_range_uses_the_current_time(make, sink, clocks):
    tracer = make(clocks=clocks)
    for start_time in (2**63, -1, float("inf"), "now", True):
        tracer.start_span("x", start_time=start_time).end()
    for record in sink.wire():  # the request is not poisoned: every span parses
        assert record["startTimeUnixNano"] == str(clocks.wall)


def test_an_end_before_the_start_is_the_start_and_the_span_is_exported(make, sink, clocks):
    tracer = make(clocks=clocks)
    start = clocks.wall - 10**9
    tracer.start_span("x", start_time=start).end(end_time=start - 10**9)
    record = sink.one()
    assert record["endTimeUnixNano"] == record["startTimeUnixNano"] == str(start)


def test_a_start_time_48_h_in_the_past_logs_a_debug_warning_about_clamping(
    make, sink, clocks, caplog
):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    tracer = make(clocks=clocks)
    tracer.start_span("old", start_time=clocks.wall - 48 * HOUR).end()
    assert any("more than 24 h in the past" in r.getMessage() for r in caplog.records)
    assert sink.one()["startTimeUnixNano"] == str(clocks.wall - 48 * HOUR)


def test_start_time_as_seconds_or_datetime(make, sink, clocks):
    from datetime import datetime, timezone

    tracer = make(clocks=clocks)
    tracer.start_span("float", start_time=1_700_000_000.5).end()
    moment = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    tracer.start_span("datetime", start_time=moment).end()
    spans = sink.by_name()
    assert spans["float"]["startTimeUnixNano"] == str(1_700_000_000_500_000_000)
    assert spans["datetime"]["startTimeUnixNano"] == str(1_700_000_000 * 10**9)


def test_an_empty_or_non_string_name_is_sent_as_unknown(tracer, sink):
    tracer.start_span("").end()
    tracer.start_span(None).end()  # type: ignore[arg-type]
    assert [s["name"] for s in sink.wire()] == ["unknown", "unknown"]


# ---------------------------------------------------------------- TRC-12/13: limits, encoding


def test_130_user_attributes_with_a_limit_of_128_export_128_and_count_2(make, sink):
    tracer = make(max_attributes=128)
    span = tracer.start_span("x", attributes={f"k{i}": i for i in range(100)})
    span.set_attributes({f"k{i}": i for i in range(100, 130)})
    span.set_attribute("k0", "updated")  # an existing key is updated, not counted
    span.end()
    record = sink.one()
    attributes = _attributes(record)
    assert len(attributes) == 128 and "k127" in attributes and "k128" not in attributes
    assert attributes["k0"] == {"stringValue": "updated"}
    assert record["droppedAttributesCount"] == 2


def test_events_past_the_limit_are_dropped_and_counted_and_the_exception_is_kept(make, sink):
    tracer = make(max_events=2, max_attributes=3)

    def work(span: Any) -> None:
        for i in range(5):
            span.add_event(f"e{i}", {f"a{j}": j for j in range(5)})
        raise ValueError("x")

    with pytest.raises(ValueError):
        tracer.with_span("x", work)
    record = sink.one()
    assert [e["name"] for e in record["events"]] == ["e0", "e1", "exception"]
    assert [len(e["attributes"]) for e in record["events"]] == [3, 3, 2]
    assert record["droppedEventsCount"] == 3


def test_a_span_at_the_attribute_limit_still_has_posthog_distinct_id_and_session_id(make, sink):
    tracer = make(max_attributes=2)
    with context(distinct_id="user-1", session_id="session-1"):
        span = tracer.start_span("x", attributes={"a": 1, "b": 2, "c": 3})
    span.end()
    attributes = _attributes(sink.one())
    assert attributes["posthogDistinctId"] == {"stringValue": "user-1"}
    assert attributes["sessionId"] == {"stringValue": "session-1"}
    assert set(attributes) == {"posthogDistinctId", "sessionId", "a", "b"}


def test_attribute_42_none_and_2_to_the_64_are_encoded_as_the_contract_says(tracer, sink, caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    span = tracer.start_span("x")
    span.set_attributes({"n": 42, "none": None, "big": 2**64})
    span.end()
    attributes = _attributes(sink.one())
    assert attributes["n"] == {"intValue": "42"}
    assert "none" not in attributes
    assert attributes["big"] == {"stringValue": "18446744073709551616"}
    assert any("outside int64" in r.getMessage() for r in caplog.records)


def test_attribute_values_are_copied_when_set(tracer, sink):
    values = [1, 2]
    span = tracer.start_span("x", attributes={"list": values})
    values.append(3)
    span.end()
    assert len(_attributes(sink.one())["list"]["arrayValue"]["values"]) == 2


# ---------------------------------------------------------------- TRC-14: identity


def test_a_span_started_while_the_id_is_a_carries_a_after_it_becomes_b(tracer, sink):
    with context(distinct_id="a"):
        span = tracer.start_span("x")
        with context(distinct_id="b"):
            span.end()
    assert _attributes(sink.one())["posthogDistinctId"] == {"stringValue": "a"}


def test_a_python_server_with_no_session_sends_no_session_id(tracer, sink):
    with context(distinct_id="a"):
        tracer.start_span("in-context").end()
    tracer.start_span("no-context").end()
    spans = sink.by_name()
    assert "sessionId" not in _attributes(spans["in-context"])
    assert _attributes(spans["no-context"]) == {}


def test_a_user_posthog_distinct_id_override_is_sent(tracer, sink):
    with context(distinct_id="from-context"):
        tracer.start_span("x", attributes={"posthogDistinctId": "override"}).end()
    assert _attributes(sink.one())["posthogDistinctId"] == {"stringValue": "override"}


# ---------------------------------------------------------------- TRC-20/24/26: limits, gates


def test_live_limit_reached_by_leaked_spans_gives_a_noop_counts_it_and_memory_stops_growing(
    make, sink
):
    tracer = make(max_live_spans=3)
    leaked = [tracer.start_span(f"leak{i}") for i in range(3)]
    assert all(isinstance(s, Span) for s in leaked)
    for _ in range(100):
        assert isinstance(tracer.start_span("refused"), NoopSpan)
    assert tracer.live_spans == 3
    assert sink.drops == ["live_limit"] * 100
    leaked[0].end()  # an end frees a place
    assert isinstance(tracer.start_span("fits"), Span)


def test_max_live_spans_leaked_spans_older_than_max_age_are_evicted_and_never_exported(
    make, sink, clocks
):
    tracer = make(clocks=clocks, max_live_spans=2, max_span_age=60)
    leaked = [tracer.start_span(f"leak{i}") for i in range(2)]
    clocks.advance(61 * 10**9)
    fresh = tracer.start_span("fresh")
    assert isinstance(fresh, Span)
    assert sink.drops == ["span_age", "span_age"] and tracer.live_spans == 1
    for span in leaked:  # the evicted handles are no-ops, never exported
        assert span.traceparent() is None and not span.is_recording()
        assert isinstance(tracer.start_span("child", parent=span), NoopSpan)
        span.end()
    fresh.end()
    assert [s["name"] for s in sink.wire()] == ["fresh"]


def test_age_is_measured_from_the_handle_creation_not_from_start_time(make, sink, clocks):
    tracer = make(clocks=clocks, max_span_age=60)
    tracer.start_span("backdated", start_time=clocks.wall - 2 * HOUR).end()
    span = tracer.start_span("too-old")
    clocks.advance(61 * 10**9)
    span.end()  # checked lazily at its own end
    assert [s["name"] for s in sink.wire()] == ["backdated"]
    assert sink.drops == ["span_age"]


def test_a_live_span_whose_user_opts_out_before_it_ends_is_not_exported(make, sink):
    opted = [False]
    tracer = make(opted_out=lambda: opted[0])
    span = tracer.start_span("x")
    opted[0] = True
    span.end()
    assert sink.records == [] and sink.drops == ["opted_out"]
    assert tracer.live_spans == 0


def test_close_discards_live_spans_counts_them_and_later_starts_are_noops(tracer, sink):
    live = tracer.start_span("live")
    tracer.start_span("done").end()
    tracer.close()
    live.end()
    assert isinstance(tracer.start_span("after"), NoopSpan) and not tracer.enabled
    assert [s["name"] for s in sink.wire()] == ["done"]
    assert sink.drops == ["closed"]


def test_the_sdk_never_raises_from_a_broken_lane_or_a_broken_value(make, sink):
    def broken(*_: Any) -> Any:
        raise RuntimeError("lane down")

    tracer = Tracer(
        TracesConfig(max_live_spans=1), broken, broken, enabled=True, opted_out=lambda: False
    )
    tracer.start_span("x").end()
    tracer.start_span("leak")
    tracer.start_span("refused").end()  # drop() raises: swallowed

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    span = make(opted_out=broken).start_span("opted-out raises")  # a no-op
    assert isinstance(span, NoopSpan)
    span = make().start_span("x")
    span.record_exception(Unprintable())
    span.set_attributes(42)  # type: ignore[arg-type]
    span.add_event("e", attributes=42)  # type: ignore[arg-type]
    span.end()
    (record,) = sink.wire()
    assert record["status"]["message"] == "<unprintable Unprintable>"


# ---------------------------------------------------------------- TRC-07: contextvars


def test_each_thread_sees_its_own_active_span(tracer, sink):
    barrier = threading.Barrier(4)
    seen: dict[str, Any] = {}

    def worker(name: str) -> None:
        with tracer.span(name) as span:
            barrier.wait(timeout=10)
            seen[name] = tracer.get_active_span() is span
            tracer.start_span(f"{name}-child").end()
            barrier.wait(timeout=10)

    with tracer.span("main"):
        threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    spans = sink.by_name()
    assert seen == {f"t{i}": True for i in range(4)}
    for i in range(4):
        assert spans[f"t{i}-child"]["parentSpanId"] == spans[f"t{i}"]["spanId"]
        assert "parentSpanId" not in spans[f"t{i}"]  # a new thread starts with no context


def test_each_asyncio_task_sees_its_own_active_span_and_inherits_its_creators(tracer, sink):
    async def task(name: str, gate: asyncio.Event) -> bool:
        async with tracer.span(name) as span:
            await gate.wait()
            tracer.start_span(f"{name}-child").end()
            return tracer.get_active_span() is span

    async def main() -> list[bool]:
        gate = asyncio.Event()
        async with tracer.span("creator"):
            tasks = [asyncio.create_task(task(f"task{i}", gate)) for i in range(3)]
        await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [True, True, True]
    spans = sink.by_name()
    for i in range(3):
        assert spans[f"task{i}"]["parentSpanId"] == spans["creator"]["spanId"]
        assert spans[f"task{i}-child"]["parentSpanId"] == spans[f"task{i}"]["spanId"]


def test_a_task_outliving_its_creators_span_still_continues_its_trace(tracer, sink):
    async def background(started: asyncio.Event, go: asyncio.Event) -> None:
        started.set()
        await go.wait()
        tracer.start_span("late").end()

    async def main() -> None:
        started, go = asyncio.Event(), asyncio.Event()
        async with tracer.span("request"):
            task = asyncio.create_task(background(started, go))
            await started.wait()
        go.set()  # the request span has ended: the task's context still holds it
        await task

    asyncio.run(main())
    spans = sink.by_name()
    assert spans["late"]["parentSpanId"] == spans["request"]["spanId"]


def test_a_generator_closed_out_of_order_ends_its_own_span_only(tracer, sink):
    def numbers() -> Any:
        with tracer.span("generator"):
            yield 1
            yield 2

    iterator = numbers()
    assert next(iterator) == 1  # the generator's span is now active here too
    with tracer.span("other") as other:
        iterator.close()  # abandoned: its scope is left while "other" is active
        assert tracer.get_active_span() is other and other.is_recording()
    assert tracer.get_active_span() is None  # the generator's scope is not restored
    assert set(sink.by_name()) == {"generator", "other"}


def test_a_scope_object_shared_by_threads_ends_each_threads_own_span(tracer, sink):
    shared = tracer.span("shared")
    barrier = threading.Barrier(2)
    ended_own: list[bool] = []

    def worker() -> None:
        with shared as span:
            barrier.wait(timeout=10)  # both inside at once
            own = span
        ended_own.append(not own.is_recording())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert ended_own == [True, True] and len(sink.wire()) == 2


def test_the_active_span_is_per_tracer_instance(make, sink):
    first, second = make(), make()
    with first.span("first") as span:
        assert first.get_active_span() is span and second.get_active_span() is None
        second.start_span("second").end()
    assert "parentSpanId" not in sink.by_name()["second"]


def test_every_public_method_is_thread_safe(make, sink):
    tracer = make(max_attributes=50, max_events=50)
    span = tracer.start_span("shared")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def hammer(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            for j in range(200):
                span.set_attribute(f"t{i}-{j}", j)
                span.add_event("e")
                span.set_status("ok")
                tracer.start_span("other", parent=span).end()
            span.end()
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    shared = [s for s in sink.wire() if s["name"] == "shared"]
    assert len(shared) == 1 and len(sink.records) == 1 + 8 * 200
    assert len(shared[0]["attributes"]) <= 50 and len(shared[0]["events"]) <= 50
    assert tracer.live_spans == 0


# ---------------------------------------------------------------- OpenTelemetry interop


@pytest.fixture
def otel_tracer() -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider().get_tracer("interop")


def test_a_native_span_inside_an_otel_span_continues_its_trace(tracer, sink, otel_tracer):
    with otel_tracer.start_as_current_span("otel") as otel:
        assert tracer.get_active_span() is None
        tracer.start_span("native").end()
        assert tracer.active_ids() == (
            f"{otel.get_span_context().trace_id:032x}",
            f"{otel.get_span_context().span_id:016x}",
        )
    context_ = otel.get_span_context()
    record = sink.one()
    assert record["traceId"] == f"{context_.trace_id:032x}"
    assert record["parentSpanId"] == f"{context_.span_id:016x}"


def test_the_innermost_of_a_native_and_an_otel_span_is_the_parent(tracer, sink, otel_tracer):
    # The native span is started inside the OTel one: it continues the OTel trace.
    with otel_tracer.start_as_current_span("otel-outer") as outer, tracer.span("native") as native:
        assert tracer.get_active_span() is native
        tracer.start_span("child-of-native").end()
        with otel_tracer.start_as_current_span("otel-inner") as inner:
            assert tracer.get_active_span() is None  # an OTel span is innermost
            tracer.start_span("child-of-otel").end()
        assert tracer.get_active_span() is native
    spans = sink.by_name()
    outer_ids = outer.get_span_context()
    assert spans["native"]["traceId"] == f"{outer_ids.trace_id:032x}"
    assert spans["native"]["parentSpanId"] == f"{outer_ids.span_id:016x}"
    assert spans["child-of-native"]["parentSpanId"] == spans["native"]["spanId"]
    assert spans["child-of-otel"]["parentSpanId"] == f"{inner.get_span_context().span_id:016x}"


def test_an_otel_span_given_as_parent_is_continued(tracer, sink, otel_tracer):
    otel = otel_tracer.start_span("otel")
    tracer.start_span("native", parent=otel).end()
    otel.end()
    assert sink.one()["parentSpanId"] == f"{otel.get_span_context().span_id:016x}"


def test_a_capture_log_inside_active_span_s_of_trace_t_carries_t_and_s(tracer, make_client, server):
    from posthog_otel._logs import build_log_capture

    client = make_client()
    capture = build_log_capture(
        client.config,
        user_agent="test",
        opted_out=lambda: False,
        clock=None,
        on_thread_start=None,
        active_ids=tracer.active_ids,
    )
    try:
        with tracer.span("step") as span:
            assert capture.capture("step done")
        assert capture.capture("outside")
        capture.exporter.flush(timeout=5)
        inside, outside = server.wait_for_log_records(2)
    finally:
        capture.exporter.close(timeout=2)
    assert inside["traceId"] == span.trace_id and inside["spanId"] == span.span_id
    assert "traceId" not in outside and "spanId" not in outside


# ---------------------------------------------------------------- fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_use_its_handles_without_deadlock(tracer, sink):
    before = tracer.start_span("before-fork")
    stop = threading.Event()

    def churn() -> None:  # holds the tracer's lock often while the parent forks
        while not stop.is_set():
            tracer.start_span("churn").end()

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with tracer.span("in-child") as span:
                    span.set_attribute("k", 1)
                before.set_attribute("ended", "in child")
                before.end()  # the parent's span: the parent exports it, not the child
                names = {r["name"] for r in sink.records}
                code = 0 if "in-child" in names and "before-fork" not in names else 2
            finally:
                os.write(write, bytes([code]))
                os._exit(0)
        os.close(write)
        ready, _, _ = select.select([read], [], [], 20)
        result = os.read(read, 1) if ready else b""
        os.waitpid(pid, 0)
    finally:
        stop.set()
        thread.join(10)
        os.close(read)
    assert result == b"\x00"
    before.end()  # the parent's handle is its own
    assert "before-fork" in {s["name"] for s in sink.wire()}


def test_a_forked_child_never_exports_the_parents_live_spans_and_continues_their_trace(
    tracer, sink
):
    """A span live at a fork is the parent's to end and export: ending it in the child
    (or leaving its ``with`` block there) exports nothing, and it neither counts toward
    the child's live limit nor is dropped at its close; a span the child starts inside
    it continues its trace, with it as the parent."""
    read, write = os.pipe()
    with tracer.span("job") as job:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with tracer.span("in-child"):
                    pass
                job.set_attribute("k", 1)
                job.end()
                tracer.close()
                (record,) = sink.records
                ok = (
                    record["name"] == "in-child"
                    and record["trace_id"] == job.trace_id
                    and record["parent_span_id"] == job.span_id
                    and job.traceparent() is not None
                    and tracer.live_spans == 0
                    and sink.drops == []
                )
                code = 0 if ok else 2
            finally:
                os.write(write, bytes([code]))
                os._exit(0)
        os.close(write)
        ready, _, _ = select.select([read], [], [], 20)
        result = os.read(read, 1) if ready else b""
        os.waitpid(pid, 0)
        os.close(read)
        assert job.is_recording()  # the parent's own handle is untouched
    assert result == b"\x00"
    assert [record["name"] for record in sink.records] == ["job"]


def test_the_tracer_module_imports_no_opentelemetry():
    import subprocess
    import sys

    code = (
        "import sys, posthog_otel._spans\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()


def test_spans_record_time_quickly_enough(tracer, sink):
    began = time.perf_counter()
    for _ in range(2000):
        with tracer.span("hot") as span:
            span.set_attribute("k", 1)
    # Generous: the point is that nothing in the path blocks or sleeps.
    assert time.perf_counter() - began < 10
    assert len(sink.records) == 2000
