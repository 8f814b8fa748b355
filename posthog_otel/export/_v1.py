"""The capture v1 lane: ``POST /i/v1/analytics/events`` (posthog-wire §1.9).

The official SDK's wire format (``capture_mode="v1"``): Bearer auth with the project
key, the ``PostHog-*`` headers, a ``created_at`` and a ``PostHog-Request-Id`` fixed once
per batch (stable across retries, ``PostHog-Attempt`` counting them), events with an
``options`` object instead of sentinel properties, and an answer per event: the engine
drops what the server dropped and resends only what it asked to retry (``results``).
``PostHog-Sdk-Info`` names this library: the server derives ``$lib`` from it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson

from .._serialize import OPTIONS, default, dumps
from .._stats import StatsRecorder
from .._version import __version__
from ._batch import Batch, EventResults, Lane
from ._gzip import gzip_body
from ._v0 import MAX_EVENT_BYTES, coerce_bool, wire_timestamp

__all__ = ["V1_PATH", "V1Lane"]

V1_PATH = "/i/v1/analytics/events"
SDK_INFO = f"posthog-otel/{__version__}"


def _coerce_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


# Sentinel properties that become typed options; a value that does not coerce is left
# out (a wrongly typed option fails the whole batch server-side).
_OPTIONS: tuple[tuple[str, str, Callable[[object], object]], ...] = (
    ("$cookieless_mode", "cookieless_mode", coerce_bool),
    ("$ignore_sent_at", "disable_skew_correction", coerce_bool),
    ("$product_tour_id", "product_tour_id", _coerce_str),
    ("$process_person_profile", "process_person_profile", coerce_bool),
)
_TOP_LEVEL = (("$session_id", "session_id"), ("$window_id", "window_id"))
_MOVED = (
    {option[0] for option in _OPTIONS} | {key for key, _ in _TOP_LEVEL} | {"$lib", "$lib_version"}
)
# Per-event result codes: anything else (``ok``, ``warning``, unknown, absent) is delivered.
_RETRY, _DROP = "retry", "drop"


class V1Lane(Lane):
    """Encodes events in the v1 shape and sends batches with per-event results."""

    path = V1_PATH
    max_event_bytes = MAX_EVENT_BYTES
    split_400 = True  # a wrongly typed field fails the whole batch: halve to isolate it

    def __init__(
        self, api_key: str, *, gzip: bool, historical_migration: bool, stats: StatsRecorder
    ) -> None:
        self._gzip = gzip
        self._stats = stats
        self._historical = historical_migration
        self._auth = f"Bearer {api_key}"

    def encode(self, event: dict[str, Any]) -> bytes:
        """JSON bytes of one event in the v1 wire shape (raises only if unencodable)."""
        properties = event.get("properties")
        properties = dict(properties) if isinstance(properties, dict) else {}
        for key in ("$set", "$set_once"):  # v1 has no top-level form: into properties
            value = event.get(key)
            if value is None:
                continue
            existing = properties.get(key)
            if isinstance(value, dict) and isinstance(existing, dict):
                properties[key] = {**value, **existing}
            elif key not in properties:
                properties[key] = value
        options: dict[str, Any] = {}
        top: dict[str, str] = {}
        if not _MOVED.isdisjoint(properties):
            for key, name, coerce in _OPTIONS:
                if key in properties:
                    value = coerce(properties.pop(key))
                    if value is not None:
                        options[name] = value
            for key, name in _TOP_LEVEL:
                if key in properties and (text := _coerce_str(properties.pop(key))) is not None:
                    top[name] = text
            properties.pop("$lib", None)
            properties.pop("$lib_version", None)
        wire: dict[str, Any] = {
            "event": event.get("event"),
            "uuid": event.get("uuid"),
            "distinct_id": event.get("distinct_id"),
            "timestamp": wire_timestamp(event, self._stats),
            "options": options,
            "properties": properties,
            **top,
        }
        try:
            return orjson.dumps(wire, default=default, option=OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            return dumps(wire, self._stats.correct, -1)

    def request(self, payloads: list[bytes]) -> tuple[str, bytes, dict[str, str]]:
        """A one-off request for ``payloads`` (a fresh batch: attempt 1)."""
        batch = Batch([{}] * len(payloads), payloads)
        batch.attempts = 1
        return self.batch_request(batch)

    def batch_request(self, batch: Batch) -> tuple[str, bytes, dict[str, str]]:
        """Path, body and headers for the next attempt at ``batch``: ``created_at`` and
        the request id are made on its first attempt and kept in ``batch.envelope``."""
        if batch.envelope is None:
            now = datetime.now(timezone.utc).isoformat()
            batch.envelope = (orjson.dumps(now), str(uuid.uuid4()))
        created_at, request_id = batch.envelope
        tail = b',"historical_migration":true}' if self._historical else b"}"
        body = b"".join(
            (b'{"created_at":', created_at, b',"batch":[', b",".join(batch.payloads), b"]", tail)
        )
        headers = {
            "Content-Type": "application/json",
            "Authorization": self._auth,
            "PostHog-Sdk-Info": SDK_INFO,
            "PostHog-Attempt": str(max(batch.attempts, 1)),
            "PostHog-Request-Id": request_id,
            "PostHog-Request-Timestamp": datetime.now(timezone.utc).isoformat(),
        }
        if self._gzip:
            body = gzip_body(body)
            headers["Content-Encoding"] = "gzip"
        return self.path, body, headers

    def results(self, batch: Batch, content: bytes) -> EventResults | None:
        """The per-event answers of a 2xx. A body that is not the results protocol
        delivers the batch (terminal, as the official SDK: resending could loop)."""
        try:
            answers = json.loads(content)["results"]
            if not isinstance(answers, dict):
                return None
        except (ValueError, KeyError, TypeError, RecursionError):  # nested too deep
            return None
        retry: list[int] = []
        rejected: list[tuple[int, str]] = []
        for index, event in enumerate(batch.events):
            answer = answers.get(str(event.get("uuid")))
            if not isinstance(answer, dict):
                continue
            code = answer.get("result")
            if code == _RETRY:
                retry.append(index)
            elif code == _DROP:
                rejected.append((index, str(answer.get("details") or "dropped")))
        if not retry and not rejected:
            return None
        return EventResults(retry, rejected)

    @staticmethod
    def envelope_overhead() -> int:
        """Bytes the envelope adds around the events (an upper bound)."""
        return 128
