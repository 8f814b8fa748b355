"""The integrations' builders are pure functions (record / event dict / span → Capture):
tested here without any client, queue or server."""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from posthog_otel import Capture
from posthog_otel.logging import record_capture
from posthog_otel.otel import span_capture
from posthog_otel.structlog import event_dict_capture


def _record(msg: str, *args: object, **extra: object) -> dict[str, object]:
    logger = logging.getLogger("shop.checkout")
    record = logger.makeRecord(
        "shop.checkout", logging.WARNING, "f.py", 1, msg, args, None, extra=extra
    )
    return dict(record.__dict__)


def test_record_capture_names_the_event_after_the_template():
    attrs = _record(
        "paid %s", 42, distinct_id="u1", plan="pro", _hidden=1, groups={"company": "acme"}
    )
    capture = Capture(*record_capture(attrs, "paid 42", ("a" * 32, "b" * 16), "distinct_id"))
    assert capture.event == "paid %s" and capture.distinct_id == "u1"
    assert capture.groups == {"company": "acme"}
    assert capture.timestamp == attrs["created"]
    assert capture.properties == {
        "plan": "pro",
        "$log_level": "warning",
        "$logger_name": "shop.checkout",
        "$log_message": "paid 42",
        "$trace_id": "a" * 32,
        "$span_id": "b" * 16,
    }


def test_record_capture_takes_the_event_extra_and_another_id_key():
    attrs = _record("ignored", event="signed_up", user="u2")
    capture = Capture(*record_capture(attrs, "ignored", None, "user"))
    assert capture.event == "signed_up" and capture.distinct_id == "u2"
    assert capture.properties is not None and "$trace_id" not in capture.properties
    assert capture.properties["$log_message"] == "ignored"


def test_event_dict_capture_leaves_bookkeeping_out():
    values = {"event": "x", "distinct_id": "u1", "plan": "pro", "_private": 1, "groups": {"g": "1"}}
    capture = Capture(
        *event_dict_capture(
            values,
            "x",
            "u1",
            "info",
            "app",
            None,
            1_700_000_000.0,
            frozenset({"event", "distinct_id", "groups"}),
        )
    )
    assert capture.event == "x" and capture.distinct_id == "u1"
    assert capture.groups == {"g": "1"}
    assert capture.properties == {"plan": "pro", "$log_level": "info", "$logger_name": "app"}
    assert capture.timestamp is not None and capture.timestamp.timestamp() == 1_700_000_000.0


def test_span_capture_carries_ids_duration_and_status():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span("parent"),
        tracer.start_as_current_span(
            "checkout", attributes={"user.id": "u1", "cart": 3, "session.id": "s1"}
        ),
    ):
        pass
    span = exporter.get_finished_spans()[0]
    capture = span_capture(span, "u1", None)
    props = capture.properties or {}
    assert capture.event == "checkout" and capture.distinct_id == "u1"
    assert props["cart"] == 3 and "user.id" not in props
    assert props["$session_id"] == "s1"
    assert props["$trace_id"] == f"{span.context.trace_id:032x}"
    assert props["$parent_span_id"] == f"{span.parent.span_id:016x}"
    assert props["$span_status"] == "UNSET" and props["$duration_ms"] >= 0
    assert span_capture(span, "u1", "named").event == "named"
