"""The native span handles (TRC-02…05, TRC-10…12): ``Span`` and the no-op ``NoopSpan``.

A ``Span`` is mutated under its tracer's one lock (every method is thread-safe) and,
once ended or evicted, ignores every call (TRC-03, TRC-20). The user's attributes and
events are capped on the handle (TRC-12: the earliest win, the excess counted); the
automatic context keys (TRC-14) are kept apart and never evicted, and a user value with
the same key wins. Times: a span that starts now derives its end and its events' times
from the monotonic clock (TRC-10), so they always fall inside the span whatever the wall
clock does; a backdated span uses the wall clock. Ending a span hands the plain record
to its tracer (``SpanOwner.finish``), which decides whether it is exported.

A handle is made active only by ``with handle:`` or ``@handle`` (TRC-05); that, and the
scoped helpers, live in ``_spans``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

from ._log import logger
from ._span_values import copy_value, exception_event, text, to_ns
from ._w3c import format_traceparent

__all__ = ["NoopSpan", "Span", "SpanOwner"]

F = TypeVar("F", bound=Callable[..., Any])

_STATUSES = ("ok", "error")
# _INHERITED: live in the process that forked this one, which exports it; here its ids
# stay usable as a parent (a child process continues the trace), nothing else.
_LIVE, _ENDED, _EVICTED, _INHERITED = 0, 1, 2, 3


class SpanOwner(Protocol):
    """What a handle needs from its tracer (``_spans.Tracer``)."""

    lock: Any

    def monotonic_ns(self) -> int: ...

    def time_ns(self) -> int: ...

    def finish(self, span: Span, record: dict[str, Any]) -> None: ...

    def decorate(self, fn: F, handle: Span | NoopSpan) -> F: ...

    def enter(self, handle: Span | NoopSpan) -> None: ...

    def exit(self, handle: Span | NoopSpan, exc: BaseException | None) -> None: ...


H = TypeVar("H", bound="_Activation")


class _Activation:
    """What every handle does as a scope (TRC-05): ``with handle:`` makes it the active
    span and ends it when left; ``@handle`` does so around each call of a function."""

    __slots__ = ()
    _owner: SpanOwner

    def __enter__(self: H) -> H:
        self._owner.enter(cast("Span | NoopSpan", self))
        return self

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        self._owner.exit(cast("Span | NoopSpan", self), exc)

    def __call__(self, fn: F) -> F:
        """As a decorator: active while ``fn`` runs, ended when it returns or settles."""
        return self._owner.decorate(fn, cast("Span | NoopSpan", self))


class Span(_Activation):
    """A live native span. Get one from ``Tracer.start_span``/``span``/``with_span``."""

    __slots__ = (
        "__weakref__",
        "_attributes",
        "_auto",
        "_backdated",
        "_dropped_attributes",
        "_dropped_events",
        "_events",
        "_kind",
        "_max_attributes",
        "_max_events",
        "_name",
        "_owner",
        "_start_mono",
        "_start_ns",
        "_state",
        "_status",
        "_status_message",
        "created_mono",
        "parent_span_id",
        "span_id",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        owner: SpanOwner,
        *,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        trace_state: str | None,
        name: object,
        kind: str,
        start_ns: int,
        start_mono: int,
        backdated: bool,
        auto: dict[str, str],
        max_attributes: int,
        max_events: int,
    ) -> None:
        self._owner = owner
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.trace_state = trace_state
        self._name = name
        self._kind = kind
        self._start_ns = start_ns
        self._start_mono = start_mono
        self.created_mono = start_mono  # TRC-20: age counts from here, not from start_time
        self._backdated = backdated
        self._auto = auto
        self._attributes: dict[str, Any] = {}
        self._events: list[dict[str, Any]] = []
        self._max_attributes = max_attributes
        self._max_events = max_events
        self._dropped_attributes = 0
        self._dropped_events = 0
        self._status: str | None = None
        self._status_message: str | None = None
        self._state = _LIVE

    def __repr__(self) -> str:
        return f"<Span {text(self._name)!r} {self.trace_id}-{self.span_id}>"

    # ------------------------------------------------------------ state

    def is_recording(self) -> bool:
        """``True`` until the span ends or is evicted."""
        return self._state == _LIVE

    def evict(self) -> bool:
        """Make this handle a no-op that is never exported (TRC-20); ``True`` if it was
        live. Called by the tracer under its lock."""
        if self._state != _LIVE:
            return False
        self._state = _EVICTED
        return True

    def inherit(self) -> None:
        """In a forked child: this span is the parent process's to end and export, so
        here every call is ignored and nothing is exported (a second record with the
        same span id would be a duplicate); its ids still parent new spans. Called by
        the tracer under its lock."""
        if self._state == _LIVE:
            self._state = _INHERITED

    @property
    def evicted(self) -> bool:
        return self._state == _EVICTED

    def _now_ns(self) -> int:
        """Now on this span's clock: monotonic from the start, or the wall clock for a
        backdated span (TRC-10)."""
        if self._backdated:
            return self._owner.time_ns()
        return self._start_ns + (self._owner.monotonic_ns() - self._start_mono)

    def _ignored(self, what: str) -> None:
        """A call after the end does nothing but say so at debug level (TRC-03); never
        under the lock (a logging handler's lock must not be taken inside ours)."""
        logger.debug("%s on a span that has ended is ignored (span %r)", what, self._name)

    # ------------------------------------------------------------ TRC-02

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute; ``None`` is ignored. Past ``max_attributes`` distinct keys
        a new key is dropped and counted (the earliest win, TRC-12)."""
        if value is None:
            return
        key = key if type(key) is str else text(key)
        value = copy_value(value)
        if self._state != _LIVE:
            return self._ignored("set_attribute")
        with self._owner.lock:
            if self._state != _LIVE:
                return None  # ended meanwhile
            attributes = self._attributes
            if key in attributes or len(attributes) < self._max_attributes:
                attributes[key] = value
            else:
                self._dropped_attributes += 1

    def set_attributes(self, attributes: Mapping[str, Any] | None) -> None:
        """``set_attribute`` for each item."""
        if not attributes:
            return
        try:
            items = list(attributes.items())
        except Exception:
            logger.debug("set_attributes takes a mapping, got %s", type(attributes).__name__)
            return
        for key, value in items:
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Add a timestamped event (its time from the span's clock); past ``max_events``
        it is dropped and counted, and its own attributes past ``max_attributes``."""
        self._add_event(name, attributes, exempt=False)

    def _add_event(self, name: object, attributes: Mapping[str, Any] | None, exempt: bool) -> None:
        event_name = name if isinstance(name, str) and name else "event"
        copied: dict[str, Any] = {}
        try:  # an event's own attributes: the first max_attributes
            for k, v in (attributes or {}).items():
                if v is not None and len(copied) < self._max_attributes:
                    copied[k if type(k) is str else text(k)] = copy_value(v)
        except Exception:
            logger.debug("add_event takes a mapping of attributes, got %r", attributes)
        if self._state != _LIVE:
            return self._ignored("add_event")
        with self._owner.lock:
            self._append_event(event_name, copied, exempt)

    def _append_event(self, name: str, attributes: dict[str, Any], exempt: bool) -> None:
        """Under the lock: the event, timed now on the span's clock, unless the span has
        ended meanwhile or (for the user's own events) ``max_events`` is reached."""
        if self._state != _LIVE:
            return
        if not exempt and len(self._events) >= self._max_events:
            self._dropped_events += 1
            return
        self._events.append({"name": name, "time_ns": self._now_ns(), "attributes": attributes})

    def set_status(self, status: str, message: str | None = None) -> None:
        """``"ok"`` or ``"error"`` (last write wins); the message goes with ``error``."""
        code = status.lower() if isinstance(status, str) else None
        if code not in _STATUSES:
            logger.debug("set_status takes 'ok' or 'error', got %r", status)
            return
        if self._state != _LIVE:
            return self._ignored("set_status")
        with self._owner.lock:
            if self._state != _LIVE:
                return None  # ended meanwhile
            self._status = code
            self._status_message = text(message) if message is not None else None

    def record_exception(self, exc: BaseException) -> None:
        """Status ``error`` with the message, and an ``exception`` event; the span stays
        live (TRC-05). Last write wins against ``set_status``."""
        self._record(exc, keep_ok=False)

    def record_auto(self, exc: BaseException) -> None:
        """What a scoped helper records for the exception leaving it: as
        ``record_exception``, except that an explicit ``ok`` is kept (TRC-05)."""
        self._record(exc, keep_ok=True)

    def _record(self, exc: object, *, keep_ok: bool) -> None:
        attributes = exception_event(exc)
        if self._state != _LIVE:
            return self._ignored("record_exception")
        with self._owner.lock:
            if self._state != _LIVE:
                return None  # ended meanwhile
            if not (keep_ok and self._status == "ok"):
                self._status = "error"
                self._status_message = attributes["exception.message"]
            self._append_event("exception", attributes, exempt=True)

    def update_name(self, name: str) -> None:
        """Rename the span (e.g. to its route template) until ``end()``."""
        if self._state != _LIVE:
            return self._ignored("update_name")
        with self._owner.lock:
            if self._state != _LIVE:
                return None  # ended meanwhile
            self._name = name

    def traceparent(self) -> str | None:
        """``00-{trace}-{span}-01``, for the ``traceparent`` header of outgoing calls;
        ``None`` once the span is evicted (its ids are never exported)."""
        if self._state == _EVICTED:
            return None
        return format_traceparent(self.trace_id, self.span_id)

    def tracestate(self) -> str | None:
        """The ``tracestate`` inherited from a remote or parent span, or ``None``."""
        if self._state == _EVICTED:
            return None
        return self.trace_state

    def end(self, end_time: object = None) -> None:
        """End the span and hand it to the traces lane; later calls do nothing (TRC-03).

        ``end_time`` (see ``to_ns``) that is invalid or out of range falls back to the
        derived end; an end before the start becomes the start (TRC-11)."""
        if self._state != _LIVE:
            return self._ignored("end")
        with self._owner.lock:
            if self._state != _LIVE:
                return None  # ended meanwhile
            self._state = _ENDED
            derived = self._now_ns()
        end_ns = derived
        if end_time is not None:
            given = to_ns(end_time)
            if given is None:
                logger.debug("span end_time %r is invalid; the derived end is used", end_time)
            else:
                end_ns = given
        self._owner.finish(self, self._to_record(max(end_ns, self._start_ns)))

    def _to_record(self, end_ns: int) -> dict[str, Any]:
        """The plain finished span the traces lane takes (``export._otlp.encode_span``).
        Safe without the lock: nothing mutates a span that is no longer live."""
        name = self._name
        if not isinstance(name, str) or not name.strip():
            logger.debug("a span with an empty or non-string name is sent as 'unknown'")
            name = "unknown"
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "trace_state": self.trace_state,
            "name": name,
            "kind": self._kind,
            "start_ns": self._start_ns,
            "end_ns": end_ns,
            "attributes": {**self._auto, **self._attributes},  # the user's value wins
            "events": self._events,
            "status": self._status,
            "status_message": self._status_message,
            "flags": 1,
            "dropped_attributes_count": self._dropped_attributes,
            "dropped_events_count": self._dropped_events,
        }


class NoopSpan(_Activation):
    """The handle given when no real span can be made (TRC-04): every method works and
    does nothing; ``traceparent()``/``tracestate()`` are ``None``, so unrecorded ids are
    never propagated. One per tracer; inside ``with noop:`` no span is active."""

    __slots__ = ("_owner",)

    trace_id = None
    span_id = None
    parent_span_id = None
    trace_state = None

    def __init__(self, owner: SpanOwner) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        return "<NoopSpan>"

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any] | None) -> None:
        pass

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        pass

    def set_status(self, status: str, message: str | None = None) -> None:
        pass

    def record_exception(self, exc: BaseException) -> None:
        pass

    def record_auto(self, exc: BaseException) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass

    def traceparent(self) -> None:
        return None

    def tracestate(self) -> None:
        return None

    def end(self, end_time: object = None) -> None:
        pass
