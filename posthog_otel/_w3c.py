"""W3C Trace Context for the native span API (TRC-06/08): ids, ``traceparent``,
``tracestate``.

Ids come from ``os.urandom`` (a CSPRNG, safe across ``fork``: a child never repeats its
parent's ids) and are never all zeros. Parsing never raises: an invalid ``traceparent``
is ``None`` (the caller starts a new root) and an invalid ``tracestate`` is ``None``
(discarded, while the ``traceparent`` is still used). No OpenTelemetry import.
"""

from __future__ import annotations

import os
import re

__all__ = ["format_traceparent", "new_span_id", "new_trace_id", "parse_traceparent", "tracestate"]

# version-traceid-parentid-flags; a future version may append "-..." fields (W3C §3.2.4).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
# A list member: a simple key or a multi-tenant ``tenant@system`` key, then a value of
# printable ASCII without ``,`` and ``=`` that does not end with a space.
_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_MAX_MEMBERS = 32
_MAX_TRACESTATE = 512


def new_trace_id() -> str:
    """16 random bytes as 32 lowercase hex characters, never all zeros."""
    while True:
        raw = os.urandom(16)
        if any(raw):
            return raw.hex()


def new_span_id() -> str:
    """8 random bytes as 16 lowercase hex characters, never all zeros."""
    while True:
        raw = os.urandom(8)
        if any(raw):
            return raw.hex()


def format_traceparent(trace_id: str, span_id: str) -> str:
    """``00-{trace}-{span}-01``: the sampled bit is always set (TRC-08)."""
    return f"00-{trace_id}-{span_id}-01"


def parse_traceparent(value: object) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid ``traceparent`` header, else ``None``.

    Surrounding whitespace and upper case are tolerated; version ``ff``, all-zero ids,
    and a version-00 header with extra fields are not. The flags are not consulted: a
    remote parent is continued even when its sampled bit is off (TRC-08).
    """
    if not isinstance(value, str) or len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id


def tracestate(value: object) -> str | None:
    """``value`` unchanged if it is a valid, non-empty W3C ``tracestate``, else ``None``.

    It is kept as an opaque string (sent as ``traceState``, inherited by children): only
    its syntax is checked (at most 32 members, 512 characters, no duplicate key).
    """
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TRACESTATE:
        return None
    keys: set[str] = set()
    for member in value.split(","):
        member = member.strip(" \t")
        if not member:
            continue  # empty list members are allowed
        if _MEMBER.fullmatch(member) is None:
            return None
        key = member.partition("=")[0]
        if key in keys:
            return None
        keys.add(key)
    if not keys or len(keys) > _MAX_MEMBERS:
        return None
    return value
