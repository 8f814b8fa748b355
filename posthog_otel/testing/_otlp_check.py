"""The fake server's check of OTLP/JSON requests (``/i/v1/logs``, ``/i/v1/traces``).

Structural, with the standard library only (users of ``posthog_otel.testing`` need no
``opentelemetry-proto``); when ``opentelemetry-proto`` *is* installed, the request must
also parse into the real ``Export…ServiceRequest`` (ids converted from the JSON hex
to the base64 that ``json_format`` expects for bytes fields).
"""

from __future__ import annotations

import base64
import binascii
import copy
import importlib
import re
from collections.abc import Callable
from typing import Any

__all__ = ["OtlpInvalid", "check_logs_request", "check_traces_request"]

_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9a-f]*")
_VALUE_KINDS = frozenset(
    {
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
    }
)


class OtlpInvalid(ValueError):
    """The request is not valid OTLP/JSON logs (the server answers 400)."""


def check_logs_request(payload: Any) -> list[dict[str, Any]]:
    """The log records of a valid request, in order; ``OtlpInvalid`` otherwise."""
    records = _items(payload, "resourceLogs", "scopeLogs", "logRecords", _check_record)
    _parse_with_proto(payload, "logs")
    return records


def check_traces_request(payload: Any) -> list[dict[str, Any]]:
    """The spans of a valid request, in order; ``OtlpInvalid`` otherwise."""
    spans = _items(payload, "resourceSpans", "scopeSpans", "spans", _check_span)
    _parse_with_proto(payload, "traces")
    return spans


def _items(
    payload: Any, outer: str, middle: str, inner: str, check: Callable[[Any], None]
) -> list[dict[str, Any]]:
    _expect(isinstance(payload, dict), "the body is not a JSON object")
    resources = payload.get(outer)
    _expect(isinstance(resources, list) and resources, f"no {outer}")
    items: list[dict[str, Any]] = []
    for resource_entry in resources:
        _expect(isinstance(resource_entry, dict), f"a {outer} entry is not an object")
        resource = resource_entry.get("resource", {})
        _expect(isinstance(resource, dict), "resource is not an object")
        _check_attributes(resource.get("attributes", []))
        scopes = resource_entry.get(middle)
        _expect(isinstance(scopes, list), f"no {middle}")
        for scope_entry in scopes:
            _expect(isinstance(scope_entry, dict), f"a {middle} entry is not an object")
            _expect(isinstance(scope_entry.get("scope", {}), dict), "scope is not an object")
            entries = scope_entry.get(inner)
            _expect(isinstance(entries, list), f"no {inner}")
            for item in entries:
                check(item)
                items.append(item)
    return items


def _check_span(span: Any) -> None:
    _expect(isinstance(span, dict), "a span is not an object")
    _check_id(span, "traceId", 32, required=True)
    _check_id(span, "spanId", 16, required=True)
    _check_id(span, "parentSpanId", 16, required=False)
    _expect(isinstance(span.get("name"), str) and span["name"], "a span without a name")
    kind = span.get("kind", 0)
    _expect(type(kind) is int and 0 <= kind <= 5, "kind is not 0..5")
    for key in ("startTimeUnixNano", "endTimeUnixNano"):
        _check_nanos(span.get(key), key)
    _expect(int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]), "end before start")
    _check_attributes(span.get("attributes", []))
    events = span.get("events", [])
    _expect(isinstance(events, list), "events is not a list")
    for event in events:
        _expect(isinstance(event, dict) and isinstance(event.get("name"), str), "bad event")
        _check_nanos(event.get("timeUnixNano"), "an event's timeUnixNano")
        _check_attributes(event.get("attributes", []))
    status = span.get("status", {})
    _expect(isinstance(status, dict), "status is not an object")
    _expect(status.get("code", 0) in (0, 1, 2), "status code is not 0, 1 or 2")
    if "flags" in span:
        flags = span["flags"]
        _expect(type(flags) is int and 0 <= flags <= 0xFFFFFFFF, "flags is not a fixed32")


def _check_id(item: dict[str, Any], key: str, length: int, *, required: bool) -> None:
    if key not in item:
        _expect(not required, f"no {key}")
        return
    value = item[key]
    _expect(
        isinstance(value, str)
        and len(value) == length
        and _HEX.fullmatch(value) is not None
        and value.count("0") != length,
        f"{key} is not {length} lowercase hex characters (and not all zeros)",
    )


def _check_nanos(value: Any, what: str) -> None:
    _expect(
        isinstance(value, str) and _DIGITS.fullmatch(value) is not None and int(value) < 2**63,
        f"{what} is not a string of nanoseconds within i64",
    )


def _check_record(record: Any) -> None:
    _expect(isinstance(record, dict), "a log record is not an object")
    for key in ("timeUnixNano", "observedTimeUnixNano"):
        _check_nanos(record.get(key), key)
    number = record.get("severityNumber")
    _expect(type(number) is int and 1 <= number <= 24, "severityNumber is not 1..24")
    _expect(isinstance(record.get("severityText"), str), "severityText is not a string")
    _check_value(record.get("body"))
    _check_attributes(record.get("attributes", []))
    _check_id(record, "traceId", 32, required=False)
    _check_id(record, "spanId", 16, required=False)
    if "flags" in record:
        flags = record["flags"]
        _expect(type(flags) is int and 0 <= flags <= 0xFFFFFFFF, "flags is not a fixed32")


def _check_attributes(attributes: Any) -> None:
    _expect(isinstance(attributes, list), "attributes is not a list")
    for pair in attributes:
        _expect(
            isinstance(pair, dict) and isinstance(pair.get("key"), str),
            "an attribute without a string key",
        )
        _check_value(pair.get("value"))


def _check_value(value: Any) -> None:
    _expect(isinstance(value, dict), "an AnyValue is not an object")
    _expect(len(value) <= 1 and set(value) <= _VALUE_KINDS, f"not an AnyValue: {value!r}")
    if not value:
        return
    ((kind, inner),) = value.items()
    if kind == "stringValue":
        _expect(isinstance(inner, str), "stringValue is not a string")
    elif kind == "boolValue":
        _expect(isinstance(inner, bool), "boolValue is not a boolean")
    elif kind == "intValue":
        _expect(
            isinstance(inner, str) and re.fullmatch(r"-?[0-9]+", inner) is not None,
            "intValue is not a stringified int64",
        )
        _expect(-(2**63) <= int(inner) < 2**63, "intValue is outside int64")
    elif kind == "doubleValue":
        _expect(type(inner) in (int, float), "doubleValue is not a number")
    elif kind == "bytesValue":
        try:
            base64.b64decode(inner, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise OtlpInvalid("bytesValue is not base64") from None
    else:
        _expect(isinstance(inner, dict) and isinstance(inner.get("values"), list), kind)
        for item in inner["values"]:
            if kind == "arrayValue":
                _check_value(item)
            else:
                _check_attributes([item])


_PROTO = {
    "logs": (
        "opentelemetry.proto.collector.logs.v1.logs_service_pb2",
        "ExportLogsServiceRequest",
        ("resourceLogs", "scopeLogs", "logRecords"),
    ),
    "traces": (
        "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        "ExportTraceServiceRequest",
        ("resourceSpans", "scopeSpans", "spans"),
    ),
}


def _parse_with_proto(payload: dict[str, Any], signal: str) -> None:
    """The real proto's verdict, when ``opentelemetry-proto`` is installed."""
    module, message, (outer, middle, inner) = _PROTO[signal]
    try:  # by name: an optional package without type stubs
        json_format: Any = importlib.import_module("google.protobuf.json_format")
        service: Any = importlib.import_module(module)
    except ImportError:
        return
    converted = copy.deepcopy(payload)
    for resource_entry in converted[outer]:
        for scope_entry in resource_entry.get(middle, []):
            for item in scope_entry.get(inner, []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in item:
                        item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()
    try:
        json_format.ParseDict(converted, getattr(service, message)())
    except json_format.ParseError as exc:
        raise OtlpInvalid(f"not an {message}: {exc}") from None


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise OtlpInvalid(message)
