"""The native span API (TRC-01…08, TRC-14, TRC-20) for services that do not run the
OpenTelemetry SDK: ``Tracer``, built on ``contextvars``, with no OpenTelemetry import.

One ``Tracer`` per client. This module starts spans (parent, ids, clocks, automatic
context, the live-span limit) and ends them; activation and the scoped helpers are in
``_span_scope``, the handles in ``_span``, W3C parsing in ``_w3c``.

A span that ends is handed, as a plain dict, to ``submit`` (the traces lane:
``before_send``, limits again, the queue); what never reaches it is counted through
``drop(reason)``: ``live_limit`` (a refused start), ``span_age`` (a live span older
than ``max_span_age``, evicted lazily at the next start or end: its handle becomes a
no-op, never exported), ``opted_out`` (opted out before the span ended) and
``closed`` (live at ``close()``: such spans are discarded, not ended, TRC-24: their
end is unknown, and a made-up one would misstate their duration).

OpenTelemetry interop without importing it: ``_context.active_span_ids()`` gives the
OTel SDK's active span when the application runs it, and a native span started inside
it continues its trace (see ``_span_scope`` for which of the two is the innermost).
Nothing raises out of this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from itertools import count
from typing import Any

from ._context import _current
from ._fork import fork_safe_lock, hold_across_fork, reset_in_child
from ._log import logger
from ._span import NoopSpan, Span
from ._span_scope import Handle, Scopes, SpanScope
from ._span_values import to_ns
from ._traces_config import TracesConfig, checked_traces_config
from ._w3c import new_span_id, new_trace_id, parse_traceparent, tracestate

__all__ = ["Handle", "SpanScope", "Tracer"]

_KINDS = frozenset({"internal", "server", "client", "producer", "consumer"})
_DAY_NS = 24 * 3600 * 10**9
_instances = count()


class Tracer(Scopes):
    """Creates native spans and tracks the active one; see the module docstring.

    ``config`` is a ``TracesConfig`` (checked here), or ``None`` for off. With
    ``enabled=False`` or no config every handle is a no-op (TRC-04: tracing is off until
    a traces config is given). ``opted_out`` is read live: at a start (a no-op is given)
    and at an end (the span is not exported). ``monotonic_ns``/``time_ns`` are the
    clocks (injectable for tests)."""

    def __init__(
        self,
        config: TracesConfig | None,
        submit: Callable[[dict[str, Any]], bool],
        drop: Callable[[str], None],
        *,
        enabled: bool,
        opted_out: Callable[[], bool],
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        checked = checked_traces_config(config) if enabled and config is not None else None
        self._config = checked
        self._enabled = checked is not None
        self._submit = submit
        self._drop = drop
        self._opted_out = opted_out
        self.monotonic_ns = monotonic_ns
        self.time_ns = time_ns
        self.lock = fork_safe_lock()  # guards the live spans and every handle's state
        hold_across_fork(self.lock)  # a child inherits them between two operations
        self._live: dict[str, Span] = {}  # by span id, oldest first
        self._closed = False
        self._max_live = checked.max_live_spans if checked else 0
        self._max_age_ns = int(checked.max_span_age * 1e9) if checked else 0
        self._noop = NoopSpan(self)
        self._active = ContextVar(f"posthog_otel_span_{next(_instances)}", default=None)
        reset_in_child(self._after_fork_in_child)

    @property
    def enabled(self) -> bool:
        return self._enabled and not self._closed

    @property
    def live_spans(self) -> int:
        """How many spans are live (started, not ended, not evicted)."""
        return len(self._live)

    # ------------------------------------------------------------ starting

    def start_span(
        self,
        name: str,
        kind: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        parent: object = None,
        tracestate: str | None = None,
        start_time: object = None,
    ) -> Handle:
        """A new span, **not** made active (TRC-01); a no-op handle when no real span
        can be made (TRC-04). ``parent``: a handle, a W3C ``traceparent`` string (with
        its ``tracestate``), an OpenTelemetry span, or ``None`` for the active span.
        ``start_time``: Unix ns (int), seconds (float) or a ``datetime``."""
        if not self._enabled or self._closed:
            return self._noop
        try:
            return self._start(name, kind, attributes, parent, tracestate, start_time)
        except Exception:
            logger.debug("start_span failed; a no-op span is used", exc_info=True)
            return self._noop

    def _start(
        self,
        name: object,
        kind: object,
        attributes: Mapping[str, Any] | None,
        parent: object,
        state: object,
        start_time: object,
    ) -> Handle:
        if self._opted_out():
            return self._noop
        resolved = self._parent(parent, state)
        if resolved is None:
            return self._noop  # a child of a no-op is a no-op
        trace_id, parent_span_id, trace_state = resolved
        assert self._config is not None
        mono = self.monotonic_ns()
        start_ns, backdated = self._start_ns(start_time)
        auto: dict[str, str] = {}
        identity = _current.get()
        if identity is not None:  # TRC-14: a snapshot at the start; empty values left out
            if identity.distinct_id:
                auto["posthogDistinctId"] = identity.distinct_id
            if identity.session_id:
                auto["sessionId"] = identity.session_id
        if kind is None:
            kind = "internal"
        elif not isinstance(kind, str) or kind.lower() not in _KINDS:
            logger.debug("span kind %r is not one of %s; internal is used", kind, sorted(_KINDS))
            kind = "internal"
        span = Span(
            self,
            trace_id=trace_id,
            span_id=new_span_id(),
            parent_span_id=parent_span_id,
            trace_state=trace_state,
            name=name,
            kind=kind.lower(),
            start_ns=start_ns,
            start_mono=mono,
            backdated=backdated,
            auto=auto,
            max_attributes=self._config.max_attributes,
            max_events=self._config.max_events,
        )
        with self.lock:
            evicted = self._evict_aged(mono)
            refused = self._closed or len(self._live) >= self._max_live
            if not refused:
                self._live[span.span_id] = span
        for _ in range(evicted):
            self._count_drop("span_age")
        if refused:
            if not self._closed:
                self._count_drop("live_limit")
            return self._noop
        span.set_attributes(attributes)
        return span

    def _start_ns(self, start_time: object) -> tuple[int, bool]:
        """(start in Unix ns, whether it is backdated: then end and events use the wall
        clock). An invalid or out-of-range ``start_time`` is now (TRC-11)."""
        now = self.time_ns()
        if start_time is None:
            return now, False
        given = to_ns(start_time)
        if given is None:
            logger.debug("span start_time %r is invalid or out of range; now is used", start_time)
            return now, False
        if now - given > _DAY_NS:
            logger.debug(
                "span start_time is more than 24 h in the past: PostHog clamps it to the"
                " time it receives the span (the original is kept in $originalTimestamp)"
            )
        return given, True

    def _parent(self, parent: object, state: object) -> tuple[str, str | None, str | None] | None:
        """(trace id, parent span id, tracestate) of a new span, or ``None`` for a no-op.
        A new root gets a new trace id (TRC-06)."""
        if parent is None:
            active = self._innermost()
            if active is None:
                return new_trace_id(), None, None
            if isinstance(active, tuple):  # the active OpenTelemetry span's ids
                return active[0], active[1], None
            parent = active
        if isinstance(parent, NoopSpan):
            return None
        if isinstance(parent, Span):
            if parent.evicted:
                return None
            return parent.trace_id, parent.span_id, parent.trace_state
        if isinstance(parent, str):
            ids = parse_traceparent(parent)
            if ids is None:
                logger.debug("an invalid traceparent %r is ignored; a new trace starts", parent)
                return new_trace_id(), None, None
            valid_state = tracestate(state)
            if state is not None and valid_state is None:
                logger.debug("an invalid tracestate %r is discarded", state)
            return ids[0], ids[1], valid_state
        otel = self._otel_parent(parent)
        if otel is not None:
            return otel
        logger.debug("span parent %r is not a span or a traceparent; a new trace starts", parent)
        return new_trace_id(), None, None

    @staticmethod
    def _otel_parent(parent: object) -> tuple[str, str, str | None] | None:
        """The ids of an OpenTelemetry span (duck-typed: ``get_span_context()``)."""
        try:
            context = parent.get_span_context()  # type: ignore[attr-defined]
            if not context.is_valid:
                return None
            state = context.trace_state.to_header() if context.trace_state else None
            return f"{context.trace_id:032x}", f"{context.span_id:016x}", tracestate(state)
        except Exception:
            return None

    def _evict_aged(self, now_mono: int) -> int:
        """Evict live spans older than ``max_span_age`` (TRC-20), oldest first; under
        the lock. Returns how many."""
        evicted = 0
        limit = now_mono - self._max_age_ns
        while self._live:
            span = next(iter(self._live.values()))
            if span.created_mono >= limit:
                break
            del self._live[span.span_id]
            evicted += span.evict()
        return evicted

    # ------------------------------------------------------------ ending (SpanOwner)

    def finish(self, span: Span, record: dict[str, Any]) -> None:
        """An ended span: exported unless it outlived ``max_span_age`` or the user opted
        out meanwhile (TRC-20/26)."""
        now = self.monotonic_ns()
        with self.lock:
            if self._live.get(span.span_id) is span:
                del self._live[span.span_id]
            aged = now - span.created_mono > self._max_age_ns
            evicted = self._evict_aged(now)
        for _ in range(evicted + aged):
            self._count_drop("span_age")
        if aged:
            return
        try:
            if self._opted_out():
                self._count_drop("opted_out")
                return
            self._submit(record)
        except Exception:
            logger.debug("handing a span to the traces lane failed", exc_info=True)

    def _count_drop(self, reason: str) -> None:
        try:
            self._drop(reason)
        except Exception:
            logger.debug("counting a dropped span failed", exc_info=True)

    def _after_fork_in_child(self) -> None:
        """The spans live at the fork belong to the parent process, which ends and
        exports them: here they are inherited (no-ops whose ids still parent new
        spans, so work in the child continues the trace) and leave the live set (they
        neither count toward the child's limit nor are dropped at its close)."""
        for span in self._live.values():
            span.inherit()
        self._live.clear()

    def close(self) -> None:
        """No more spans: later starts give no-ops, and spans still live are discarded
        and counted as ``closed`` (TRC-24; call before the lane's last flush)."""
        with self.lock:
            self._closed = True
            live = [span for span in self._live.values() if span.evict()]
            self._live.clear()
        for _ in live:
            self._count_drop("closed")
