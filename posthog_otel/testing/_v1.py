"""How the fake server reads ``POST /i/v1/analytics/events`` (posthog-wire §1.9) and
answers it per event, as PostHog's capture v1 does.

The request: Bearer token, ``PostHog-Sdk-Info``, a JSON body ``{"created_at", "batch",
"historical_migration"?}`` (no ``api_key``, no ``sent_at``) whose events have exactly
the v1 fields, a valid uuid, an RFC 3339 timestamp with an offset and a typed
``options`` object. Anything malformed fails the whole request (400), as a wrongly
typed field does on the real server. A valid request gets 200 with
``{"results": {uuid: {"result": code}}}``; ``code`` is what the test's ``decide``
returns for the event (``ok`` by default), ``drop`` for an event over the size limit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ._requests import MAX_BODY_BYTES, Rejected, decode_body, valid_token

V1_PATH = "/i/v1/analytics/events"
ResultFor = Callable[[dict[str, Any]], "str | None"]

_BODY_KEYS = {"created_at", "batch", "historical_migration"}
_EVENT_KEYS = {
    "event",
    "uuid",
    "distinct_id",
    "timestamp",
    "options",
    "properties",
    "session_id",
    "window_id",
}
_OPTION_TYPES: Mapping[str, type] = {
    "cookieless_mode": bool,
    "disable_skew_correction": bool,
    "product_tour_id": str,
    "process_person_profile": bool,
}
# Results that leave the event stored (the others: dropped, or to be sent again).
ACCEPTED = frozenset({"ok", "warning"})


def handle_v1(
    raw: bytes,
    headers: Mapping[str, str],
    *,
    max_event_bytes: int,
    decide: ResultFor | None,
) -> tuple[bytes, Any, list[dict[str, Any]], dict[str, Any]]:
    """The decoded body, its JSON, the events stored and the answer; raises
    ``Rejected`` for a request the real server refuses as a whole."""
    bearer = headers.get("authorization", "")
    if not bearer.startswith("Bearer ") or not valid_token(bearer[7:]):
        raise Rejected(401, "invalid_token", "missing or invalid Bearer token")
    if not headers.get("posthog-sdk-info"):
        raise Rejected(400, "missing_sdk_info", "PostHog-Sdk-Info header required")
    if len(raw) > MAX_BODY_BYTES:
        raise Rejected(413, "payload_too_large", "request body too large")
    body = decode_body(raw, headers)
    try:
        payload = json.loads(body)
    except ValueError:
        raise Rejected(400, "request_parsing_error", "body is not JSON") from None
    if not isinstance(payload, dict) or not set(payload) <= _BODY_KEYS:
        raise Rejected(400, "request_parsing_error", "unexpected body fields")
    _check_time(payload.get("created_at"), "created_at")
    if "historical_migration" in payload and not isinstance(payload["historical_migration"], bool):
        raise Rejected(400, "request_parsing_error", "historical_migration is not a bool")
    batch = payload.get("batch")
    if not isinstance(batch, list) or not batch:
        raise Rejected(400, "empty_batch", "batch must be a non-empty list")
    for event in batch:
        _check_event(event)
    results: dict[str, dict[str, str]] = {}
    stored: list[dict[str, Any]] = []
    for event in batch:
        code = (decide(event) if decide is not None else None) or "ok"
        answer = {"result": code}
        if len(json.dumps(event).encode()) > max_event_bytes:
            answer = {"result": "drop", "details": "event_too_big"}
        elif code == "drop":
            answer["details"] = "dropped by the test"
        results[event["uuid"]] = answer
        if answer["result"] in ACCEPTED:
            stored.append(event)
    return body, payload, stored, {"results": results}


def _check_event(event: Any) -> None:
    if not isinstance(event, dict) or not set(event) <= _EVENT_KEYS:
        raise Rejected(400, "request_parsing_error", "event is not a v1 event object")
    if not isinstance(event.get("event"), str) or not event["event"]:
        raise Rejected(400, "missing_event_name", "event without a name")
    distinct_id = event.get("distinct_id")
    if not isinstance(distinct_id, str) or not distinct_id:
        raise Rejected(400, "missing_distinct_id", "distinct_id must be a non-empty string")
    try:
        uuid.UUID(str(event.get("uuid")))
    except ValueError:
        raise Rejected(400, "request_parsing_error", "invalid uuid") from None
    _check_time(event.get("timestamp"), "timestamp")
    options = event.get("options")
    if not isinstance(options, dict):
        raise Rejected(400, "request_parsing_error", "options must be an object")
    for name, value in options.items():
        kind = _OPTION_TYPES.get(name)
        if kind is None or type(value) is not kind:
            raise Rejected(400, "request_parsing_error", f"bad option {name}={value!r}")
    if not isinstance(event.get("properties"), dict):
        raise Rejected(400, "request_parsing_error", "properties must be an object")
    for name in ("session_id", "window_id"):
        if name in event and not isinstance(event[name], str):
            raise Rejected(400, "request_parsing_error", f"{name} must be a string")


def _check_time(value: Any, name: str) -> None:
    """RFC 3339 with an explicit offset (the server rejects naive times)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise Rejected(400, "request_parsing_error", f"{name} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise Rejected(400, "request_parsing_error", f"{name} has no offset")
