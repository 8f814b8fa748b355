"""Request-scoped identity, carried in a context variable.

``with context(distinct_id=...)`` makes captures, log records and spans without an
explicit distinct id belong to that person. Contexts nest: an inner context inherits
what it does not override. Being *inside* a context (even one without a distinct id,
for example a request with no identity headers) turns a capture without a distinct id
into a personless event instead of a dropped one.

Flag property overrides (``set_person_properties_for_flags`` and friends) set inside a
context live in that context: they end with it, never reach the next request served by
the same thread, and are merged over the enclosing contexts' and the client's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PERSONLESS",
    "IdentityContext",
    "active_span_ids",
    "context",
    "current_context",
    "get_distinct_id",
]


class FlagOverrides:
    """Person and group properties for flag evaluation set inside one identity context.

    Replaced, never mutated in place (copy on write), so a concurrent reader always sees
    a whole version."""

    __slots__ = ("groups", "person")

    def __init__(self) -> None:
        self.person: Mapping[str, Any] | None = None
        self.groups: Mapping[str, Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class IdentityContext:
    """The identity in force for the current request or task."""

    distinct_id: str | None = None
    session_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    device_id: str | None = None  # flag reads without ``device_id=`` use it
    # The enclosing context (its flag overrides apply here too) and this one's own.
    parent: IdentityContext | None = field(default=None, repr=False, compare=False)
    flag_overrides: FlagOverrides = field(default_factory=FlagOverrides, repr=False, compare=False)


_current: ContextVar[IdentityContext | None] = ContextVar("posthog_otel_identity", default=None)


def current_context() -> IdentityContext | None:
    """The innermost identity context, or ``None`` outside any."""
    return _current.get()


def get_distinct_id() -> str | None:
    """The distinct id of the current identity context, or ``None`` (a pure local read)."""
    ctx = _current.get()
    return ctx.distinct_id if ctx is not None else None


@contextmanager
def context(
    distinct_id: object = None,
    session_id: object = None,
    properties: Mapping[str, Any] | None = None,
    device_id: object = None,
) -> Iterator[IdentityContext]:
    """Set request-scoped identity for the ``with`` block (and tasks started inside it).

    Values not given are inherited from an enclosing context; ``properties`` are merged
    over the enclosing context's properties. ``device_id`` is what flag reads without
    their own ``device_id=`` bucket device flags by and send to ``/flags``.
    """
    parent = _current.get()
    merged: dict[str, Any] = dict(parent.properties) if parent is not None else {}
    if properties:
        merged.update(properties)
    ctx = IdentityContext(
        distinct_id=_as_id(distinct_id) or (parent.distinct_id if parent else None),
        session_id=_as_id(session_id) or (parent.session_id if parent else None),
        properties=merged,
        device_id=_as_id(device_id) or (parent.device_id if parent else None),
        parent=parent,
    )
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def _as_id(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


# Inside this context, a capture without a distinct id is sent personless.
PERSONLESS = IdentityContext()


def active_span_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the active OpenTelemetry span, as lowercase hex.

    Only looked up when the application already imported OpenTelemetry: we never
    import it ourselves on a hot path.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
