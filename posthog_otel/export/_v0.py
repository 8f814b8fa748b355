"""The v0 ``/batch/`` lane: how an event is encoded and how a batch becomes a request."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson

from .._serialize import OPTIONS, default, dumps, format_timestamp
from .._stats import StatsRecorder
from ._batch import Lane
from ._gzip import gzip_body

MAX_EVENT_BYTES = 900 * 1024
_fromtimestamp = datetime.fromtimestamp
_UTC = timezone.utc
_orjson_dumps = orjson.dumps
_TRUE_STRINGS = {"true": True, "1": True, "false": False, "0": False}


class V0Lane(Lane):
    """Encodes events in the v0 shape and wraps batches in the ``/batch/`` envelope."""

    path = "/batch/"
    max_event_bytes = MAX_EVENT_BYTES
    split_400 = True

    def __init__(
        self,
        api_key: str,
        *,
        gzip: bool,
        historical_migration: bool,
        stats: StatsRecorder,
    ) -> None:
        self._gzip = gzip
        self._stats = stats
        self._envelope_tail = (
            b'],"historical_migration":'
            + (b"true" if historical_migration else b"false")
            + b',"sent_at":'
        )
        self._api_key_json = orjson.dumps(api_key)

    def encode(self, event: dict[str, Any]) -> bytes:
        """JSON bytes of one event in the v0 wire shape (raises only if unencodable)."""
        timestamp = wire_timestamp(event, self._stats)
        properties = event.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        if "$cookieless_mode" in properties:
            properties = _coerce_cookieless(properties)
        wire: dict[str, Any] = {
            "event": event.get("event"),
            "distinct_id": event.get("distinct_id"),
            "properties": properties,
            "timestamp": timestamp,
            "uuid": event.get("uuid"),
        }
        if "$set" in event:
            wire["$set"] = event["$set"]
        if "$set_once" in event:
            wire["$set_once"] = event["$set_once"]
        try:  # dumps' fast path, without the call
            return _orjson_dumps(wire, default=default, option=OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            return dumps(wire, self._stats.correct, -1)  # -1: "properties" is level 0

    def request(self, payloads: list[bytes]) -> tuple[str, bytes, dict[str, str]]:
        """Path, body and headers for one attempt (``sent_at`` is fresh per attempt)."""
        sent_at = orjson.dumps(datetime.now(timezone.utc).isoformat())
        body = b"".join(
            (
                b'{"batch":[',
                b",".join(payloads),
                self._envelope_tail,
                sent_at,
                b',"api_key":',
                self._api_key_json,
                b"}",
            )
        )
        headers = {"Content-Type": "application/json"}
        if self._gzip:
            body = gzip_body(body)
            headers["Content-Encoding"] = "gzip"
        return self.path, body, headers

    @staticmethod
    def envelope_overhead() -> int:
        """Bytes the envelope adds around the events (an upper bound)."""
        return 256


def wire_timestamp(event: dict[str, Any], stats: StatsRecorder) -> datetime | str:
    """The event's timestamp for the wire: an aware UTC datetime (orjson writes it
    exactly as ``isoformat()`` does, tests/test_wire.py checks it, without a Python call
    per event) or an ISO-8601 string; an unusable one becomes now (counted)."""
    raw = event.get("timestamp")
    if type(raw) is float:  # epoch seconds: what the client and the handler record
        try:
            return _fromtimestamp(raw, _UTC)
        except (OverflowError, OSError, ValueError):
            pass
    timestamp, ok = format_timestamp(raw)
    if not ok:
        stats.correct(
            "invalid_timestamp",
            f"event {event.get('event')!r} has an unusable timestamp; sent as now",
        )
    return timestamp


def coerce_bool(value: object) -> bool | None:
    """A boolean option as the server reads it: a bool, ``"true"``/``"1"``/``"false"``/
    ``"0"`` (any case, trimmed) or a number (non-zero is true); ``None`` otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _TRUE_STRINGS.get(value.strip().lower())
    if isinstance(value, int | float):
        return value != 0
    return None


def _coerce_cookieless(properties: dict[str, Any]) -> dict[str, Any]:
    """The server rejects a whole request over a non-boolean ``$cookieless_mode``."""
    value = properties["$cookieless_mode"]
    if isinstance(value, bool):
        return properties
    properties = dict(properties)
    coerced = coerce_bool(value)
    if coerced is None:
        del properties["$cookieless_mode"]
    else:
        properties["$cookieless_mode"] = coerced
    return properties
