"""How the fake server reads a request: the body (gzip, size budget), the events and
their token, and PostHog's validation of an event's fields (``$exception`` included)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

MAX_BODY_BYTES = 20 * 1024 * 1024
_DECOMPRESSED_BUDGET = 5 * MAX_BODY_BYTES
# The v0 capture endpoints.
CAPTURE_PATHS = frozenset({"/batch", "/e", "/i/v0/e", "/capture", "/track", "/engage"})


class Rejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def validate_exception(properties: Any) -> None:
    """An ``$exception`` event as error tracking reads it: a non-empty
    ``$exception_list`` of objects with a non-empty string ``type``, a string ``value``
    when present, a ``mechanism`` object when present, and frames as a list of
    objects."""

    def bad(detail: str) -> Rejected:
        return Rejected(400, "invalid_exception", f"$exception: {detail}")

    exc_list = properties.get("$exception_list") if isinstance(properties, dict) else None
    if not isinstance(exc_list, list) or not exc_list:
        raise bad("$exception_list must be a non-empty list")
    for entry in exc_list:
        if not isinstance(entry, dict):
            raise bad("an $exception_list entry is not an object")
        if not isinstance(entry.get("type"), str) or not entry["type"]:
            raise bad("an entry's type must be a non-empty string")
        if "value" in entry and not isinstance(entry["value"], str):
            raise bad("an entry's value must be a string")
        if "mechanism" in entry and not isinstance(entry["mechanism"], dict):
            raise bad("an entry's mechanism must be an object")
        stacktrace = entry.get("stacktrace")
        if stacktrace is None:
            continue
        frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
        if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
            raise bad("stacktrace.frames must be a list of objects")


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def normalize_path(path: str) -> str:
    path = urlsplit(path).path
    return path.rstrip("/") or "/"


def decode_body(raw: bytes, headers: Mapping[str, str]) -> bytes:
    encoding = headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "gzip-js") or raw[:3] == b"\x1f\x8b\x08":
        try:
            decompressor = zlib.decompressobj(31)
            body = decompressor.decompress(raw, _DECOMPRESSED_BUDGET + 1)
        except zlib.error:
            raise Rejected(400, "request_decoding_error", "invalid gzip") from None
        if len(body) > _DECOMPRESSED_BUDGET:
            raise Rejected(413, "payload_too_large", "decompressed body too large")
        return body
    return raw


def events_of(payload: Any, path: str) -> tuple[list[Any], Any]:
    if isinstance(payload, list):
        return payload, None
    if isinstance(payload, dict) and "batch" in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise Rejected(400, "request_parsing_error", "batch is not a list")
        return batch, payload.get("api_key", payload.get("token"))
    if isinstance(payload, dict):
        if "event" not in payload and path != "/engage":
            raise Rejected(400, "request_hydration_error", "event without a name")
        return [payload], None
    raise Rejected(400, "request_parsing_error", "unexpected JSON shape")


def token_of(events: Iterable[Any], batch_token: Any) -> str:
    if batch_token is not None:
        token = batch_token
    else:
        tokens = set()
        for event in events:
            if not isinstance(event, dict):
                continue
            found = event.get("token", event.get("$token", event.get("api_key")))
            if found is None and isinstance(event.get("properties"), dict):
                found = event["properties"].get("token")
            if found is not None:
                tokens.add(str(found))
        if len(tokens) > 1:
            raise Rejected(401, "multiple_tokens", "more than one token in one request")
        if not tokens:
            raise Rejected(401, "no_token", "no token")
        token = tokens.pop()
    if not valid_token(token):
        raise Rejected(401, "invalid_token", "invalid token")
    return str(token)


def valid_token(token: Any) -> bool:
    if not isinstance(token, str):
        return False
    token = token.strip()
    return (
        bool(token)
        and len(token.encode()) <= 64
        and token.isascii()
        and "\x00" not in token
        and not token.startswith("phx_")
    )
