"""Hostile values on the OTLP lanes (issue #14, review 14): what a caller hands a span
or a log record is sent as it was at that moment, and nothing the encoder can render
is lost on the way (the encoder's rule: anything it has no type for is sent by
``str()``, bytes-like values as ``bytesValue``)."""

from __future__ import annotations

import base64
import collections
import enum
import logging
from pathlib import PurePosixPath
from typing import Any

import orjson
import pytest

import posthog_otel
from posthog_otel._spans import Tracer
from posthog_otel._traces_config import TracesConfig
from posthog_otel.export._otlp import encode_span
from posthog_otel.logging import PostHogHandler


def _attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {kv["key"]: kv["value"] for kv in item.get("attributes", [])}


class _Color(enum.Enum):
    RED = 1


class _Mutable:
    """An object the encoder renders by ``str()``, whose text changes later."""

    def __init__(self) -> None:
        self.text = "before"

    def __str__(self) -> str:
        return self.text


class _Broken:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no equality")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")


def test_a_native_span_keeps_the_values_of_the_moment_they_were_set():
    """A mapping that is not a plain dict, a bytearray and an object rendered by
    ``str()`` are taken when ``set_attribute`` runs: later mutations are not sent."""
    records: list[dict[str, Any]] = []
    tracer = Tracer(
        TracesConfig(), records.append, lambda reason: None, enabled=True, opted_out=lambda: False
    )
    ordered = collections.OrderedDict(a=1)
    grouped: collections.defaultdict[str, list[int]] = collections.defaultdict(list, k=[1])
    raw = bytearray(b"ab")
    mutable = _Mutable()
    span = tracer.start_span("moment", attributes={"ordered": ordered})
    span.set_attribute("grouped", grouped)
    span.set_attribute("raw", raw)
    span.set_attribute("mutable", mutable)
    span.add_event("e", {"raw": raw, "mutable": mutable})
    ordered["b"] = 2
    grouped["k"].append(2)
    raw.extend(b"cd")
    mutable.text = "after"
    span.end()
    (record,) = records
    wire = orjson.loads(encode_span(record))
    attributes = _attributes(wire)
    assert attributes["ordered"]["kvlistValue"]["values"] == [
        {"key": "a", "value": {"intValue": "1"}}
    ]
    assert attributes["grouped"]["kvlistValue"]["values"][0]["value"] == {
        "arrayValue": {"values": [{"intValue": "1"}]}
    }
    assert attributes["raw"] == {"bytesValue": base64.b64encode(b"ab").decode()}
    assert attributes["mutable"] == {"stringValue": "before"}
    event = _attributes(wire["events"][0])
    assert event == {
        "raw": {"bytesValue": base64.b64encode(b"ab").decode()},
        "mutable": {"stringValue": "before"},
    }


def test_objects_the_encoder_renders_by_str_reach_the_traces_lane(make_client, server):
    """A path, an enum member, a bytearray or any object in a span's attributes is sent
    as the encoder renders it, not silently lost on the way to the queue."""
    client = make_client(traces=True)
    with client.span("values") as span:
        span.set_attribute("path", PurePosixPath("/srv/app"))
        span.set_attribute("color", _Color.RED)
        span.set_attribute("raw", bytearray(b"ab"))
        span.set_attribute("nested", {"path": PurePosixPath("/x"), "n": 1})
        span.set_attribute("broken", _Broken())
    assert client.flush(10)
    (sent,) = server.spans()
    attributes = _attributes(sent)
    assert attributes["path"] == {"stringValue": "/srv/app"}
    assert attributes["color"] == {"stringValue": "_Color.RED"}
    assert attributes["raw"] == {"bytesValue": base64.b64encode(b"ab").decode()}
    assert attributes["nested"]["kvlistValue"]["values"] == [
        {"key": "path", "value": {"stringValue": "/x"}},
        {"key": "n", "value": {"intValue": "1"}},
    ]
    assert attributes["broken"] == {"stringValue": "<unprintable _Broken>"}


def test_objects_the_encoder_renders_by_str_reach_the_logs_lane(make_client, server):
    client = make_client()
    mutable = _Mutable()
    raw = bytearray(b"ab")
    assert client.capture_log(
        "values",
        attributes={"path": PurePosixPath("/srv/app"), "mutable": mutable, "raw": raw},
    )
    mutable.text = "after"
    raw.extend(b"cd")
    assert client.flush(10)
    (record,) = server.log_records()
    attributes = _attributes(record)
    assert attributes["path"] == {"stringValue": "/srv/app"}
    assert attributes["mutable"] == {"stringValue": "before"}
    assert attributes["raw"] == {"bytesValue": base64.b64encode(b"ab").decode()}


@pytest.mark.parametrize("body", [PurePosixPath("/srv/app"), _Color.RED])
def test_a_log_body_the_encoder_renders_by_str_is_sent(make_client, server, body):
    client = make_client()
    assert client.capture_log(body)  # type: ignore[arg-type]
    assert client.flush(10)
    (record,) = server.log_records()
    assert record["body"] == {"stringValue": str(body)}


def test_a_logging_extra_the_encoder_renders_by_str_is_sent(make_client, server):
    client = make_client()
    log = logging.getLogger("tests.otlp_hostile")
    handler = PostHogHandler(client, logs=True)
    log.addHandler(handler)
    try:
        log.warning("with extras", extra={"path": PurePosixPath("/srv/app")})
    finally:
        log.removeHandler(handler)
    assert client.flush(10)
    (record,) = server.log_records()
    assert _attributes(record)["path"] == {"stringValue": "/srv/app"}


def test_a_log_made_inside_the_logs_before_send_is_not_passed_to_it_again(make_client, server):
    """A hook that logs (to the logger the handler feeds, or with ``capture_log``) does
    not recurse: a record made while the lane's hook runs on this thread is sent as it
    is. (It recursed to Python's limit, and a hook doing both grew exponentially.)"""
    calls: list[str] = []
    holder: dict[str, Any] = {}

    def hook(record: dict[str, Any]) -> dict[str, Any]:
        calls.append(record["body"])
        if len(calls) > 3:  # before the fix: recursion (bounded here to fail fast)
            return record
        holder["client"].capture_log("from the hook")
        logging.getLogger("tests.otlp_hostile.hook").warning("logged by the hook")
        return record

    client = make_client(logs=posthog_otel.LogsConfig(before_send=hook))
    holder["client"] = client
    handler = PostHogHandler(client, logs=True)
    log = logging.getLogger("tests.otlp_hostile.hook")
    log.addHandler(handler)
    try:
        assert client.capture_log("top")
    finally:
        log.removeHandler(handler)
    assert calls == ["top"]
    assert client.flush(10)
    bodies = sorted(record["body"]["stringValue"] for record in server.log_records())
    assert bodies == ["from the hook", "logged by the hook", "top"]


def test_a_span_ended_inside_the_traces_before_send_is_not_passed_to_it_again(make_client, server):
    calls: list[str] = []
    holder: dict[str, Any] = {}

    def hook(span: dict[str, Any]) -> dict[str, Any]:
        calls.append(span["name"])
        if len(calls) > 3:  # before the fix: recursion (bounded here to fail fast)
            return span
        with holder["client"].span("made by the hook"):
            pass
        return span

    client = make_client(traces=posthog_otel.TracesConfig(before_send=hook))
    holder["client"] = client
    with client.span("outer"):
        pass
    assert calls == ["outer"]
    assert client.flush(10)
    assert sorted(span["name"] for span in server.spans()) == ["made by the hook", "outer"]
