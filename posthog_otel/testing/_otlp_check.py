"""The fake server's check of OTLP/JSON logs requests (``/i/v1/logs``).

Structural, with the standard library only (users of ``posthog_otel.testing`` need no
``opentelemetry-proto``); when ``opentelemetry-proto`` *is* installed, the request must
also parse into the real ``ExportLogsServiceRequest`` (ids converted from the JSON hex
to the base64 that ``json_format`` expects for bytes fields).
"""

from __future__ import annotations

import base64
import binascii
import copy
import importlib
import re
from typing import Any

__all__ = ["OtlpInvalid", "check_logs_request"]

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
    _expect(isinstance(payload, dict), "the body is not a JSON object")
    resource_logs = payload.get("resourceLogs")
    _expect(isinstance(resource_logs, list) and resource_logs, "no resourceLogs")
    records: list[dict[str, Any]] = []
    for resource_log in resource_logs:
        _expect(isinstance(resource_log, dict), "a resourceLogs entry is not an object")
        resource = resource_log.get("resource", {})
        _expect(isinstance(resource, dict), "resource is not an object")
        _check_attributes(resource.get("attributes", []))
        scope_logs = resource_log.get("scopeLogs")
        _expect(isinstance(scope_logs, list), "no scopeLogs")
        for scope_log in scope_logs:
            _expect(isinstance(scope_log, dict), "a scopeLogs entry is not an object")
            scope = scope_log.get("scope", {})
            _expect(isinstance(scope, dict), "scope is not an object")
            log_records = scope_log.get("logRecords")
            _expect(isinstance(log_records, list), "no logRecords")
            for record in log_records:
                _check_record(record)
                records.append(record)
    _parse_with_proto(payload)
    return records


def _check_record(record: Any) -> None:
    _expect(isinstance(record, dict), "a log record is not an object")
    for key in ("timeUnixNano", "observedTimeUnixNano"):
        value = record.get(key)
        _expect(
            isinstance(value, str) and _DIGITS.fullmatch(value) is not None,
            f"{key} is not a string of nanoseconds",
        )
    number = record.get("severityNumber")
    _expect(type(number) is int and 1 <= number <= 24, "severityNumber is not 1..24")
    _expect(isinstance(record.get("severityText"), str), "severityText is not a string")
    _check_value(record.get("body"))
    _check_attributes(record.get("attributes", []))
    for key, length in (("traceId", 32), ("spanId", 16)):
        if key in record:
            value = record[key]
            _expect(
                isinstance(value, str) and len(value) == length and _HEX.fullmatch(value),
                f"{key} is not {length} lowercase hex characters",
            )
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


def _parse_with_proto(payload: dict[str, Any]) -> None:
    """The real proto's verdict, when ``opentelemetry-proto`` is installed."""
    try:  # by name: an optional package without type stubs
        json_format: Any = importlib.import_module("google.protobuf.json_format")
        service: Any = importlib.import_module(
            "opentelemetry.proto.collector.logs.v1.logs_service_pb2"
        )
    except ImportError:
        return
    converted = copy.deepcopy(payload)
    for resource_log in converted["resourceLogs"]:
        for scope_log in resource_log.get("scopeLogs", []):
            for record in scope_log.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode()
    try:
        json_format.ParseDict(converted, service.ExportLogsServiceRequest())
    except json_format.ParseError as exc:
        raise OtlpInvalid(f"not an ExportLogsServiceRequest: {exc}") from None


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise OtlpInvalid(message)
