"""The OTLP/JSON encoder (issue #14): the contract's encoding examples one by one
(sdk-contracts §2.1, LOG-09…16), and what we produce parsed into the real proto
messages of ``opentelemetry-proto`` (a test-only dependency: the ``dev`` extra)."""

from __future__ import annotations

import base64
import logging
import math
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from posthog_otel.export import (
    LogsLane,
    TracesLane,
    resource_attributes,
    valid_flags,
    valid_hex_id,
)
from posthog_otel.export._otlp import any_value, encode_attributes, encode_log_record, encode_span

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"


def _record(**fields: Any) -> dict[str, Any]:
    record = {
        "time_ns": 1_700_000_000_000_000_000,
        "severity_number": 9,
        "severity_text": "INFO",
        "body": "hello",
        "attributes": {},
        "trace_id": None,
        "span_id": None,
        "flags": None,
    }
    record.update(fields)
    return record


def _request_json(records: list[dict[str, Any]], **resource: Any) -> dict[str, Any]:
    lane = LogsLane(
        "phc_key",
        gzip=False,
        resource=resource or {"service.name": "checkout"},
        scope_name="posthog-otel",
        scope_version="1.2.3",
    )
    path, body, headers = lane.request([lane.encode(r) for r in records])
    assert path == "/i/v1/logs?token=phc_key"
    assert "Content-Encoding" not in headers
    return orjson.loads(body)


def _parse(request: dict[str, Any]) -> logs_service_pb2.ExportLogsServiceRequest:
    """Into the real proto message; ids from hex to the base64 ``json_format`` reads."""
    converted = orjson.loads(orjson.dumps(request))
    for resource_logs in converted["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for record in scope_logs["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode()
    message = logs_service_pb2.ExportLogsServiceRequest()
    json_format.ParseDict(converted, message)  # raises on anything that is not OTLP
    return message


# ---------------------------------------------------------------- LOG-13: AnyValue


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", {"stringValue": "s"}),
        (True, {"boolValue": True}),
        (False, {"boolValue": False}),
        (4999, {"intValue": "4999"}),
        (-(2**63), {"intValue": str(-(2**63))}),
        (2**63 - 1, {"intValue": str(2**63 - 1)}),
        (1.5, {"doubleValue": 1.5}),
        (math.nan, {"stringValue": "NaN"}),
        (math.inf, {"stringValue": "Infinity"}),
        (-math.inf, {"stringValue": "-Infinity"}),
        (
            {"inner": 1},
            {"kvlistValue": {"values": [{"key": "inner", "value": {"intValue": "1"}}]}},
        ),
        ([1, "a"], {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}]}}),
        ((True,), {"arrayValue": {"values": [{"boolValue": True}]}}),
        (b"\x00\xff", {"bytesValue": "AP8="}),
        (
            datetime(2026, 1, 2, tzinfo=timezone.utc),
            {"stringValue": "2026-01-02T00:00:00+00:00"},
        ),
    ],
)
def test_any_value_by_runtime_type(value, expected):
    assert any_value(value) == expected


def test_an_int_outside_int64_is_a_string_with_a_debug_message(caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    assert any_value(2**63) == {"stringValue": str(2**63)}
    assert any_value(-(2**63) - 1) == {"stringValue": str(-(2**63) - 1)}
    assert "outside int64" in caplog.text


def test_none_leaves_the_key_out_at_every_level():
    inner = {"values": [{"key": "d", "value": {"intValue": "1"}}]}
    assert encode_attributes({"a": None, "b": {"c": None, "d": 1}}) == [
        {"key": "b", "value": {"kvlistValue": inner}}
    ]


def test_bool_and_int_subclasses_and_odd_objects_encode():
    class Level(int):
        pass

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert any_value(Level(3)) == {"intValue": "3"}
    assert any_value(Broken()) == {"stringValue": "<unrepresentable Broken>"}
    assert any_value({1: "x"}) == {
        "kvlistValue": {"values": [{"key": "1", "value": {"stringValue": "x"}}]}
    }


def test_a_cycle_or_deep_nesting_is_cut_not_a_recursion_error():
    cycle: list[Any] = []
    cycle.append(cycle)
    encoded = orjson.dumps(any_value(cycle))
    assert b"nested too deep" in encoded


# ---------------------------------------------------------------- LOG-09…12: the record


def test_a_record_has_string_nanosecond_times_severity_body_attributes():
    wire = orjson.loads(encode_log_record(_record(attributes={"n": 4999})))
    assert wire == {
        "timeUnixNano": "1700000000000000000",
        "observedTimeUnixNano": "1700000000000000000",
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "hello"},
        "attributes": [{"key": "n", "value": {"intValue": "4999"}}],
    }


def test_flags_zero_is_sent_and_absent_flags_and_ids_are_left_out():
    assert orjson.loads(encode_log_record(_record(flags=0)))["flags"] == 0
    absent = orjson.loads(encode_log_record(_record()))
    assert "flags" not in absent and "traceId" not in absent and "spanId" not in absent


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        (TRACE_ID.upper(), 32, TRACE_ID),
        (f" {SPAN_ID} ", 16, SPAN_ID),
        (0x0AF7651916CD43DD8448EB211C80319C, 32, TRACE_ID),
        ("0" * 32, 32, None),
        (0, 16, None),
        (2**64, 16, None),
        ("xyz", 16, None),
        (TRACE_ID, 16, None),
        (None, 32, None),
        (1.0, 16, None),
    ],
)
def test_ids_are_lowercase_hex_of_the_right_length_or_left_out(value, length, expected):
    assert valid_hex_id(value, length) == expected


def test_flags_are_a_fixed32_or_left_out():
    assert [valid_flags(v) for v in (0, 1, 0xFFFFFFFF, -1, 2**32, True, "1", None)] == [
        0,
        1,
        0xFFFFFFFF,
        None,
        None,
        None,
        None,
        None,
    ]


# ---------------------------------------------------------------- LOG-15/16: the envelope


def test_sdk_owned_resource_keys_win_over_the_users():
    merged = resource_attributes(
        {"service.name": "checkout", "telemetry.sdk.name": "posthog-otel", "os.name": "linux"},
        {"service.name": "evil", "telemetry.sdk.name": "x", "os.name": "mine", "team": "a"},
    )
    assert merged == {
        "service.name": "checkout",
        "telemetry.sdk.name": "posthog-otel",
        "os.name": "mine",
        "team": "a",
    }


def test_a_batch_of_20_is_one_resource_logs_with_one_scope_logs_of_20():
    request = _request_json([_record(body=f"r{i}") for i in range(20)])
    assert len(request["resourceLogs"]) == 1
    (resource_logs,) = request["resourceLogs"]
    (scope_logs,) = resource_logs["scopeLogs"]
    assert scope_logs["scope"] == {"name": "posthog-otel", "version": "1.2.3"}
    assert [r["body"]["stringValue"] for r in scope_logs["logRecords"]] == [
        f"r{i}" for i in range(20)
    ]
    assert resource_logs["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "checkout"}}
    ]


def test_the_gzip_body_says_so():
    lane = LogsLane("k", gzip=True, resource={}, scope_name="s", scope_version="1")
    _, body, headers = lane.request([lane.encode(_record())])
    assert headers["Content-Encoding"] == "gzip" and body[:2] == b"\x1f\x8b"
    assert headers["Content-Type"] == "application/json"


def test_the_token_is_url_encoded():
    lane = LogsLane("phc a/b", gzip=False, resource={}, scope_name="s", scope_version="1")
    assert lane.request([lane.encode(_record())])[0] == "/i/v1/logs?token=phc%20a%2Fb"


# ---------------------------------------------------------------- the real proto


def test_everything_we_encode_parses_into_the_real_proto_messages():
    records = [
        _record(
            body={"nested": [1, 2.5, None, {"deep": True}], "n": None},
            attributes={
                "int": 4999,
                "big": 2**70,
                "nan": math.nan,
                "inf": -math.inf,
                "bytes": b"\x01\x02",
                "list": [1, "two", False],
                "map": {"inner": 1},
                "gone": None,
            },
            trace_id=TRACE_ID,
            span_id=SPAN_ID,
            flags=1,
            severity_number=17,
            severity_text="ERROR",
        ),
        _record(time_ns=1_700_000_000_000_000_001, flags=0),
    ]
    message = _parse(_request_json(records, **{"service.name": "checkout", "pid": 12}))
    (resource_logs,) = message.resource_logs
    first, second = resource_logs.scope_logs[0].log_records
    assert len(first.trace_id) == 16 and first.trace_id.hex() == TRACE_ID
    assert len(first.span_id) == 8 and first.span_id.hex() == SPAN_ID
    assert first.flags == 1 and second.flags == 0
    assert first.time_unix_nano == 1_700_000_000_000_000_000
    assert second.time_unix_nano == first.time_unix_nano + 1
    assert first.severity_number == 17 and first.severity_text == "ERROR"
    attributes = {kv.key: kv.value for kv in first.attributes}
    assert "gone" not in attributes
    assert attributes["int"].int_value == 4999
    assert attributes["big"].string_value == str(2**70)
    assert attributes["nan"].string_value == "NaN"
    assert attributes["inf"].string_value == "-Infinity"
    assert attributes["bytes"].bytes_value == b"\x01\x02"
    assert [v.WhichOneof("value") for v in attributes["list"].array_value.values] == [
        "int_value",
        "string_value",
        "bool_value",
    ]
    assert attributes["map"].kvlist_value.values[0].value.int_value == 1
    assert first.body.kvlist_value.values[0].key == "nested"
    assert len(second.trace_id) == 0 and len(second.span_id) == 0


def test_a_message_that_is_not_otlp_fails_to_parse():
    # The check above has teeth: json_format refuses what is not an OTLP message.
    bad = _request_json([_record()])
    bad["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["severityNumber"] = "loud"
    with pytest.raises(json_format.ParseError):
        _parse(bad)


# ---------------------------------------------------------------- spans (TRC-09…16)


def _span(**fields: Any) -> dict[str, Any]:
    span = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "name": "GET /users/:id",
        "start_ns": 1_700_000_000_000_000_000,
        "end_ns": 1_700_000_000_500_000_000,
        "attributes": {},
        "events": [],
    }
    span.update(fields)
    return span


def _traces_json(spans: list[dict[str, Any]]) -> dict[str, Any]:
    lane = TracesLane(
        "phc_key",
        gzip=False,
        resource={"service.name": "checkout"},
        scope_name="posthog-otel",
        scope_version="1.2.3",
    )
    path, body, headers = lane.request([lane.encode(s) for s in spans])
    assert path == "/i/v1/traces"
    assert headers["Authorization"] == "Bearer phc_key"
    return orjson.loads(body)


def test_a_minimal_span_is_internal_without_status_with_string_times():
    wire = orjson.loads(encode_span(_span()))
    assert wire == {
        "traceId": TRACE_ID,
        "spanId": SPAN_ID,
        "name": "GET /users/:id",
        "kind": 1,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000500000000",
        "attributes": [],
        "events": [],
        "flags": 1,
    }


@pytest.mark.parametrize(
    ("kind", "number"),
    [
        ("unspecified", 0),
        ("internal", 1),
        ("server", 2),
        ("client", 3),
        ("producer", 4),
        ("consumer", 5),
        (None, 1),
        ("odd", 1),
        (3, 3),
        (9, 1),
    ],
)
def test_span_kinds(kind, number):
    assert orjson.loads(encode_span(_span(kind=kind)))["kind"] == number


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (None, None, None),
        ("unset", None, None),
        ("ok", "ignored", {"code": 1}),
        ("error", "boom", {"code": 2, "message": "boom"}),
        ("error", None, {"code": 2}),
    ],
)
def test_span_status_codes(status, message, expected):
    wire = orjson.loads(encode_span(_span(status=status, status_message=message)))
    assert wire.get("status") == expected


def test_span_validity_is_enforced_before_sending():
    # TRC-11: a blank name, an end before the start, a time outside i64, an event
    # outside the span: each would make the server refuse the whole request.
    start = 1_700_000_000_000_000_000
    wire = orjson.loads(
        encode_span(
            _span(
                name="  ",
                start_ns=start,
                end_ns=start - 5,
                events=[{"name": "late", "time_ns": start + 10**12, "attributes": {"n": 1}}],
                flags=0,
                parent_span_id="00f067aa0ba902b7",
                trace_state="vendor=1",
                dropped_attributes_count=2,
            )
        )
    )
    assert wire["name"] == "unknown"
    assert wire["endTimeUnixNano"] == wire["startTimeUnixNano"] == str(start)
    one = [{"key": "n", "value": {"intValue": "1"}}]
    assert wire["events"] == [{"name": "late", "timeUnixNano": str(start), "attributes": one}]
    assert wire["flags"] == 1  # the sampled bit is always on
    assert wire["parentSpanId"] == "00f067aa0ba902b7" and wire["traceState"] == "vendor=1"
    assert wire["droppedAttributesCount"] == 2
    now = orjson.loads(encode_span(_span(start_ns=2**63, end_ns=-1)))
    assert 0 < int(now["startTimeUnixNano"]) <= int(now["endTimeUnixNano"]) < 2**63


def test_a_span_without_valid_ids_is_not_encoded():
    with pytest.raises(ValueError, match="trace id"):
        encode_span(_span(trace_id="0" * 32))
    with pytest.raises(ValueError, match="span id"):
        encode_span(_span(span_id="abc"))


def test_spans_parse_into_the_real_proto_messages():
    request = _traces_json(
        [
            _span(
                kind="server",
                status="error",
                status_message="boom",
                attributes={"http.status": 500, "big": 2**64, "none": None},
                events=[
                    {
                        "name": "exception",
                        "time_ns": 1_700_000_000_100_000_000,
                        "attributes": {"exception.type": "TypeError"},
                    }
                ],
                parent_span_id="00f067aa0ba902b7",
            ),
            _span(span_id="1" * 16),
        ]
    )
    assert len(request["resourceSpans"]) == 1
    converted = orjson.loads(orjson.dumps(request))
    for span in converted["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    message = trace_service_pb2.ExportTraceServiceRequest()
    json_format.ParseDict(converted, message)
    (scope_spans,) = message.resource_spans[0].scope_spans
    first, second = scope_spans.spans
    assert scope_spans.scope.name == "posthog-otel"
    assert len(first.trace_id) == 16 and len(first.span_id) == 8
    assert len(first.parent_span_id) == 8 and len(second.parent_span_id) == 0
    assert first.kind == 2 and first.status.code == 2 and first.status.message == "boom"
    assert second.kind == 1 and second.status.code == 0
    attributes = {kv.key: kv.value for kv in first.attributes}
    assert attributes["http.status"].int_value == 500
    assert attributes["big"].string_value == "18446744073709551616"
    assert "none" not in attributes
    (event,) = first.events
    assert event.name == "exception"
    assert first.start_time_unix_nano <= event.time_unix_nano <= first.end_time_unix_nano
