"""OTLP/JSON encoding, written once for the OTLP lanes (logs today; traces to come).

Only core dependencies (orjson): the logs lane must work without OpenTelemetry
installed. The shapes follow the OTLP/JSON mapping of ``opentelemetry-proto`` (camelCase
field names, 64-bit integers as strings, trace and span ids as lowercase hex) and the
contracts of sdk-contracts §2.1 (LOG-09…16); tests/test_otlp.py parses what we produce
into the real proto messages.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import orjson

from .._log import logger

__all__ = [
    "any_value",
    "encode_attributes",
    "encode_log_record",
    "logs_envelope",
    "resource_attributes",
    "valid_flags",
    "valid_hex_id",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_MAX_DEPTH = 16  # deeper nesting (or a cycle) is sent as a string placeholder
_HEX = frozenset("0123456789abcdef")
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


def logs_envelope(
    resource: Mapping[str, Any], scope_name: str, scope_version: str
) -> tuple[bytes, bytes]:
    """The bytes before and after the comma-joined log records of one request: one
    ``resourceLogs[0].scopeLogs[0].logRecords`` per batch (LOG-16)."""
    head = (
        b'{"resourceLogs":[{"resource":{"attributes":'
        + orjson.dumps(encode_attributes(resource))
        + b'},"scopeLogs":[{"scope":'
        + orjson.dumps({"name": scope_name, "version": scope_version})
        + b',"logRecords":['
    )
    return head, b"]}]}]}"
