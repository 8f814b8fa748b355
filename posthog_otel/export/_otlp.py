"""OTLP/JSON encoding, written once for the OTLP lanes (logs and traces).

Only core dependencies (orjson): the logs lane must work without OpenTelemetry
installed. The shapes follow the OTLP/JSON mapping of ``opentelemetry-proto`` (camelCase
field names, 64-bit integers as strings, trace and span ids as lowercase hex) and the
contracts of sdk-contracts §2.1 (LOG-09…16) and §2.2 (TRC-09…16); tests/test_otlp.py
parses what we produce into the real proto messages.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import orjson

from .._log import logger

__all__ = [
    "any_value",
    "encode_attributes",
    "encode_log_record",
    "encode_span",
    "envelope",
    "resource_attributes",
    "valid_flags",
    "valid_hex_id",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_DEPTH = 16  # deeper nesting (or a cycle) is sent as a string placeholder
_HEX = frozenset("0123456789abcdef")
_MAX_NS = 2**63 - 1  # the server refuses a whole request over one time outside i64 ns
SPAN_KINDS = {
    "unspecified": 0,
    "internal": 1,
    "server": 2,
    "client": 3,
    "producer": 4,
    "consumer": 5,
}
STATUS_CODES = {"unset": 0, "ok": 1, "error": 2}
# Resource keys the SDK owns: the user's ``resourceAttributes`` never override these.
_SDK_OWNED_PREFIXES = ("service.", "telemetry.sdk.")


def any_value(value: Any, depth: int = 0) -> dict[str, Any]:
    """``value`` as an OTLP ``AnyValue`` by its runtime type (LOG-13).

    ``bool`` before ``int`` (a subclass); ints as stringified int64 (out of range: a
    string, with a debug message); NaN and ±Inf as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``; bytes as ``bytesValue`` (base64); lists, tuples and
    sets as ``arrayValue``; mappings as ``kvlistValue`` without ``None`` values; anything
    else by ``str()`` (dates in ISO 8601). ``None`` inside an array is an empty value.
    """
    kind = type(value)
    if kind is str:
        return {"stringValue": value}
    if kind is bool:
        return {"boolValue": value}
    if kind is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            return {"intValue": str(value)}
        logger.debug("an integer outside int64 is sent as a string: %d", value)
        return {"stringValue": str(value)}
    if kind is float:
        if math.isfinite(value):
            return {"doubleValue": value}
        return {
            "stringValue": "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        }
    if value is None:
        return {}
    if depth >= _MAX_DEPTH:
        return {"stringValue": "[nested too deep]"}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": encode_attributes(value, depth + 1)}}
    if isinstance(value, list | tuple | set | frozenset):
        return {"arrayValue": {"values": [any_value(item, depth + 1) for item in value]}}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, bool):  # subclasses of the basic types: by their base type
        return {"boolValue": bool(value)}
    if isinstance(value, int):
        return any_value(int(value), depth)
    if isinstance(value, float):
        return any_value(float(value), depth)
    if isinstance(value, str):
        return {"stringValue": str(value)}
    if isinstance(value, datetime | date):
        return {"stringValue": value.isoformat()}
    try:
        return {"stringValue": str(value)}
    except Exception:  # a broken __str__ never loses the record
        return {"stringValue": f"<unrepresentable {type(value).__name__}>"}


def encode_attributes(values: Mapping[Any, Any], depth: int = 0) -> list[dict[str, Any]]:
    """A mapping as an OTLP ``KeyValue`` list; ``None`` values are left out (LOG-13)."""
    return [
        {"key": key if type(key) is str else str(key), "value": any_value(value, depth)}
        for key, value in values.items()
        if value is not None
    ]


def valid_hex_id(value: Any, length: int) -> str | None:
    """``value`` as a lowercase hex id of ``length`` characters (32 for a trace id, 16
    for a span id), or ``None`` if it is not one (an int is formatted; all zeros is
    invalid, as in W3C trace context)."""
    if type(value) is int:
        if not 0 < value < 16**length:
            return None
        return f"{value:0{length}x}"
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if len(text) != length or not _HEX.issuperset(text) or text.count("0") == length:
        return None
    return text


def valid_flags(value: Any) -> int | None:
    """Trace flags as the ``fixed32`` the wire carries, or ``None`` (left out)."""
    if type(value) is int and 0 <= value <= 0xFFFFFFFF:
        return value
    return None


def encode_log_record(record: Mapping[str, Any]) -> bytes:
    """One plain log record (see ``posthog_otel._logs``) as an OTLP ``LogRecord``.

    ``time_ns`` goes out as a string in both ``timeUnixNano`` and
    ``observedTimeUnixNano`` (LOG-09/10); ``traceId``, ``spanId`` and ``flags`` only
    when present (LOG-11, an explicit ``0`` flags included).
    """
    time_ns = str(record["time_ns"])
    wire: dict[str, Any] = {
        "timeUnixNano": time_ns,
        "observedTimeUnixNano": time_ns,
        "severityNumber": record["severity_number"],
        "severityText": record["severity_text"],
        "body": any_value(record["body"]),
        "attributes": encode_attributes(record["attributes"]),
    }
    if record.get("trace_id") is not None:
        wire["traceId"] = record["trace_id"]
    if record.get("span_id") is not None:
        wire["spanId"] = record["span_id"]
    if record.get("flags") is not None:
        wire["flags"] = record["flags"]
    return orjson.dumps(wire)


def resource_attributes(sdk: Mapping[str, Any], user: Mapping[str, Any] | None) -> dict[str, Any]:
    """The resource: the user's attributes, then the SDK's over them, except that a user
    value stays for a key the SDK does not own (``service.*`` and ``telemetry.sdk.*``
    are always the SDK's: LOG-15)."""
    merged: dict[str, Any] = {}
    for key, value in sdk.items():
        if value is not None and not str(key).startswith(_SDK_OWNED_PREFIXES):
            merged[key] = value
    merged.update(user or {})
    for key, value in sdk.items():
        if value is not None and str(key).startswith(_SDK_OWNED_PREFIXES):
            merged[key] = value
    return merged


def encode_span(span: Mapping[str, Any]) -> bytes:
    """One plain finished span as an OTLP ``Span`` (TRC-09/11).

    ``span`` holds ``trace_id``/``span_id`` (lowercase hex, already valid: a span whose
    ids are not raises ``ValueError`` and is dropped by the exporter), optional
    ``parent_span_id`` and ``trace_state``, ``name``, ``kind`` (a name or a number;
    internal by default), ``start_ns``/``end_ns``, ``attributes``, ``events`` (each a
    mapping with ``name``, ``time_ns``, ``attributes``), ``status`` (``ok``/``error``
    or ``None``) with ``status_message``, ``flags`` and the dropped counts. Validity is
    enforced here, because one bad span makes the server refuse the whole request: a
    blank name becomes ``unknown``, a time outside i64 nanoseconds is now, an end before
    the start is the start; the sampled flag is always set.
    """
    trace_id = valid_hex_id(span.get("trace_id"), 32)
    span_id = valid_hex_id(span.get("span_id"), 16)
    if trace_id is None or span_id is None:
        raise ValueError("a span without a valid trace id and span id")
    name = span.get("name")
    if not isinstance(name, str) or not name.strip():
        logger.debug("a span with an empty or non-string name is sent as 'unknown'")
        name = "unknown"
    start = _valid_ns(span.get("start_ns"))
    end = max(_valid_ns(span.get("end_ns")), start)
    kind = span.get("kind")
    wire: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": kind if type(kind) is int and 0 <= kind <= 5 else SPAN_KINDS.get(str(kind), 1),
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": encode_attributes(span.get("attributes") or {}),
        "events": [
            {
                "name": str(event.get("name") or "event"),
                "timeUnixNano": str(min(max(_valid_ns(event.get("time_ns")), start), end)),
                "attributes": encode_attributes(event.get("attributes") or {}),
            }
            for event in span.get("events") or ()
        ],
        "flags": (valid_flags(span.get("flags")) or 0) | 1,
    }
    parent = valid_hex_id(span.get("parent_span_id"), 16)
    if parent is not None:
        wire["parentSpanId"] = parent
    if isinstance(span.get("trace_state"), str) and span["trace_state"]:
        wire["traceState"] = span["trace_state"]
    code = STATUS_CODES.get(str(span.get("status")), 0)
    if code:
        status: dict[str, Any] = {"code": code}
        if code == 2 and span.get("status_message"):
            status["message"] = str(span["status_message"])
        wire["status"] = status
    for key, field in (
        ("dropped_attributes_count", "droppedAttributesCount"),
        ("dropped_events_count", "droppedEventsCount"),
    ):
        count = span.get(key)
        if type(count) is int and count > 0:
            wire[field] = count
    return orjson.dumps(wire)


def _valid_ns(value: Any) -> int:
    """A time in nanoseconds within ``[0, i64 max]``, else now (TRC-11)."""
    if type(value) is int and 0 <= value <= _MAX_NS:
        return value
    return time.time_ns()


# The OTLP/JSON field names of one request, per signal.
_SIGNALS = {
    "logs": (b"resourceLogs", b"scopeLogs", b"logRecords"),
    "traces": (b"resourceSpans", b"scopeSpans", b"spans"),
}


def envelope(
    signal: str, resource: Mapping[str, Any], scope_name: str, scope_version: str
) -> tuple[bytes, bytes]:
    """The bytes before and after the comma-joined items of one request: one
    ``resourceLogs[0].scopeLogs[0].logRecords`` (LOG-16) or
    ``resourceSpans[0].scopeSpans[0].spans`` (TRC-16) per batch."""
    outer, scope, items = _SIGNALS[signal]
    head = b"".join(
        (
            b'{"',
            outer,
            b'":[{"resource":{"attributes":',
            orjson.dumps(encode_attributes(resource)),
            b'},"',
            scope,
            b'":[{"scope":',
            orjson.dumps({"name": scope_name, "version": scope_version}),
            b',"',
            items,
            b'":[',
        )
    )
    return head, b"]}]}]}"
