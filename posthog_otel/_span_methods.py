"""The native span API on ``Client`` (TRC-01…08), over its ``Tracer`` (``_spans``).

``Client(traces=True)`` (or ``traces=TracesConfig(...)``) switches it on; without it
every handle is a no-op that costs almost nothing (TRC-04). A span that ends goes to the
client's traces lane (``client.traces``) as plain data. README, "Traces".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._span import Span
from ._spans import Handle, SpanScope, Tracer

__all__ = ["SpanMethods"]

T = TypeVar("T")


class SpanMethods:
    """``start_span``, ``span``, ``with_span`` and ``get_active_span``: mixed into
    ``Client``, each a thin call to the client's tracer."""

    _tracer: Tracer

    def start_span(
        self,
        name: str,
        kind: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        parent: object = None,
        tracestate: str | None = None,
        start_time: object = None,
    ) -> Handle:
        """A new span, **not** made active: ``with handle:`` or ``@handle`` activates
        it; ``handle.end()`` sends it. ``kind``: ``internal`` (default), ``server``,
        ``client``, ``producer``, ``consumer``. ``parent``: a handle, a W3C
        ``traceparent`` string (with ``tracestate``), an OpenTelemetry span, or ``None``
        for the active span. ``start_time``: Unix ns (int), seconds (float) or a
        ``datetime``. A no-op handle when traces are off, after ``opt_out()``, at the
        live-span limit or under a no-op parent."""
        return self._tracer.start_span(name, kind, attributes, parent, tracestate, start_time)

    def span(
        self,
        name: str,
        *,
        kind: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        parent: object = None,
        tracestate: str | None = None,
        start_time: object = None,
    ) -> SpanScope:
        """``with client.span(name) as span:`` (or ``async with``), or
        ``@client.span(name)`` on a function or coroutine function: a new span per use,
        active inside, ended when left (an exception leaving it marks it ``error``, adds
        an ``exception`` event and is re-raised as it is). Options as ``start_span``."""
        return self._tracer.span(
            name,
            kind=kind,
            attributes=attributes,
            parent=parent,
            tracestate=tracestate,
            start_time=start_time,
        )

    def with_span(
        self,
        name: str,
        fn: Callable[[Handle], T],
        *,
        kind: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        parent: object = None,
        tracestate: str | None = None,
        start_time: object = None,
    ) -> T:
        """``fn(span)`` with a new span active; ``fn``'s result (a coroutine's span
        ends when it settles). Options as ``start_span``."""
        return self._tracer.with_span(
            name,
            fn,
            kind=kind,
            attributes=attributes,
            parent=parent,
            tracestate=tracestate,
            start_time=start_time,
        )

    def get_active_span(self) -> Span | None:
        """The native span active in this context (thread, asyncio task), or ``None``."""
        return self._tracer.get_active_span()
