"""Active spans and the scoped helpers of the native span API (TRC-05, TRC-07): the
part of ``Tracer`` that activates spans, as a base class of its own.

The active span lives in a context variable per tracer (TRC-07: per SDK instance), so
threads and asyncio tasks each see their own. Only the scoped helpers (``span``,
``with_span``, ``with handle:``, ``@handle``) activate a span. The context variable
holds a chain of entries (``_Entry``), each hiding the one before: leaving a scope makes
active again what it hid, with no token to carry, so a scope left in another context or
out of order (a generator abandoned mid-scope and closed later) unwinds only itself.
Contexts copied inside a scope (asyncio tasks) keep its span active after it ends.

Which of a native span and an OpenTelemetry span is the innermost: if the OTel span
active now is the one recorded when the native span was activated (or none is active),
the native span is (it was activated inside that OTel span); if it differs, an OTel
span was started inside the native one and is the innermost. OTel does not see native
spans: an OTel span started inside a native one starts its own trace.

A callback that returns an awaitable (a coroutine function, or a function returning
one) ends its span when the awaitable settles (TRC-05): a coroutine is wrapped in one
that keeps the span active while it runs; a future or task is returned as it is, with
a done callback that ends the span. A generator's span ends when the call returns.

An ``Exception`` leaving a scope is recorded (status ``error`` unless an explicit
``ok`` was set, and an ``exception`` event), then re-raised unchanged;
``CancelledError``, ``KeyboardInterrupt`` and the like end the span without an error
status.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from ._context import active_span_ids
from ._log import logger
from ._span import NoopSpan, Span

__all__ = ["Handle", "Scopes", "SpanScope", "otel_ids"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
Handle = Span | NoopSpan


class _Entry:
    """One activation: the handle, the OpenTelemetry span ids active when it was
    activated (to tell which is the innermost) and the entry it hides. ``left`` marks
    a scope left out of order (an abandoned generator closed later, elsewhere): it is
    skipped when what hides it is left."""

    __slots__ = ("handle", "hidden", "left", "otel")

    def __init__(self, handle: Handle, otel: tuple[str, str] | None, hidden: _Entry | None):
        self.handle = handle
        self.otel = otel
        self.hidden = hidden
        self.left = False


def _visible(entry: _Entry | None) -> _Entry | None:
    while entry is not None and entry.left:
        entry = entry.hidden
    return entry


def otel_ids() -> tuple[str, str] | None:
    try:
        return active_span_ids()
    except Exception:  # an odd OpenTelemetry setup never breaks a span
        return None


class Scopes:
    """Activation and the scoped helpers; ``Tracer`` provides ``start_span`` and sets
    the attributes below."""

    _active: ContextVar[_Entry | None]
    _enabled: bool
    _noop: NoopSpan

    def start_span(
        self,
        name: str,
        kind: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        parent: object = None,
        tracestate: str | None = None,
        start_time: object = None,
    ) -> Handle:
        raise NotImplementedError

    def _innermost(self) -> Handle | tuple[str, str] | None:
        """The default parent: the native active entry if it is the innermost, else the
        active OpenTelemetry span's ids, else ``None`` (see the module docstring)."""
        entry = _visible(self._active.get())
        otel = otel_ids()
        if entry is not None and (otel is None or entry.otel == otel):
            return entry.handle
        return otel

    def get_active_span(self) -> Span | None:
        """The native span active here, or ``None`` (also inside a no-op's scope, and
        when an OpenTelemetry span started inside it is the innermost)."""
        active = self._innermost() if self._enabled else None
        if isinstance(active, Span) and not active.evicted:
            return active
        return None

    def active_ids(self) -> tuple[str, str] | None:
        """(trace id, span id) of the innermost active span, native or OpenTelemetry's:
        what a log record captured now carries (LOG-32, TRC-17)."""
        active = self._innermost() if self._enabled else otel_ids()
        if isinstance(active, tuple):
            return active
        if isinstance(active, Span) and not active.evicted:
            return active.trace_id, active.span_id
        return None

    def enter(self, handle: Handle) -> None:
        """Make ``handle`` the active span of this context (a no-op hides the active
        one: inside its scope no span is active and new spans are no-ops)."""
        if self._enabled:
            self._active.set(_Entry(handle, otel_ids(), self._active.get()))

    def exit(self, handle: Handle, exc: BaseException | None) -> None:
        """Leave ``handle``'s scope: record the exception leaving it (an explicit ``ok``
        is kept), end it, and make active again what it hid."""
        try:
            if isinstance(exc, Exception):
                handle.record_auto(exc)
            handle.end()
        finally:
            self._leave(handle)

    async def _settle(self, handle: Handle, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` with ``handle`` active, then end it (end-at-settle)."""
        self.enter(handle)
        try:
            result = await awaitable
        except BaseException as exc:
            self.exit(handle, exc)
            raise
        self.exit(handle, None)
        return result

    def _call(self, handle: Handle, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` with ``handle`` active; an awaitable result ends the span when it
        settles, anything else right away."""
        self.enter(handle)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.exit(handle, exc)
            raise
        if inspect.isawaitable(result):
            if not self._enabled:
                return result  # tracing off: the awaitable as it is
            self._leave(handle)
            if callable(getattr(result, "add_done_callback", None)):
                return self._end_when_done(handle, result)
            return self._settle(handle, result)
        self.exit(handle, None)
        return result

    @staticmethod
    def _end_when_done(handle: Handle, future: Any) -> Any:
        """A future or task is returned as it is (the caller may cancel or await it) and
        its span ends when it is done, with the error it ended with (reading it counts as
        retrieving it: asyncio no longer logs it as never retrieved)."""

        def done(settled: Any) -> None:
            try:
                exc = None if settled.cancelled() else settled.exception()
                if isinstance(exc, Exception):
                    handle.record_auto(exc)
            except BaseException:
                logger.debug("reading a settled future failed", exc_info=True)
            handle.end()

        try:
            future.add_done_callback(done)
        except Exception:
            logger.debug("a future refused a done callback; its span ends now", exc_info=True)
            handle.end()
        return future

    def _leave(self, handle: Handle) -> None:
        """Make active again what ``handle``'s scope hid. Contexts copied inside the
        scope (asyncio tasks) keep it active: a task outliving its creator's span still
        continues its trace."""
        if not self._enabled:
            return
        top = self._active.get()
        if top is not None and top.handle is handle:
            self._active.set(_visible(top.hidden))
            return
        entry = top
        while entry is not None and entry.handle is not handle:
            entry = entry.hidden
        if entry is not None:
            entry.left = True

    def decorate(
        self, fn: F, handle: Handle | None, start: Callable[[], Handle] | None = None
    ) -> F:
        """``fn`` run inside a span: ``handle``, or a new one from ``start()`` per call.
        A coroutine function's span ends when its coroutine settles."""
        if not callable(fn):
            logger.debug("a span decorates a callable, got %r", fn)
            return fn

        def get() -> Handle:
            return handle if handle is not None else cast("Callable[[], Handle]", start)()

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                span = get()
                self.enter(span)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    self.exit(span, exc)
                    raise
                self.exit(span, None)
                return result

            return cast("F", run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            return self._call(get(), fn, *args, **kwargs)

        return cast("F", run)

    # ------------------------------------------------------------ scoped helpers

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
        """``with tracer.span(name) as span:`` (or ``async with``), or ``@tracer.span(name)``
        on a function or coroutine function: a new span per use, active inside. The
        options are ``start_span``'s."""
        opts = {
            "kind": kind,
            "attributes": attributes,
            "parent": parent,
            "tracestate": tracestate,
            "start_time": start_time,
        }
        return SpanScope(self, name, opts)

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
        """``fn(span)`` with a new span active; returns ``fn``'s result. A coroutine
        result is wrapped (await it) and ends the span when it settles; a future or task
        is returned as it is and ends the span when done. The options are
        ``start_span``'s."""
        handle = self.start_span(name, kind, attributes, parent, tracestate, start_time)
        return cast("T", self._call(handle, fn, handle))

    def top(self) -> Handle:
        """The handle of the innermost scope entered in this context (the no-op when
        none, or when tracing is off)."""
        entry = _visible(self._active.get()) if self._enabled else None
        return entry.handle if entry is not None else self._noop


class SpanScope:
    """What ``Tracer.span`` returns: a context manager (sync and async) that starts a
    span on entry and ends it on exit, and a decorator that does so per call."""

    __slots__ = ("_entered", "_name", "_opts", "_tracer")

    def __init__(self, tracer: Scopes, name: str, opts: dict[str, Any]) -> None:
        self._tracer = tracer
        self._name = name
        self._opts = opts
        self._entered: list[Handle] = []  # entered and not yet left (one, in practice)

    def _start(self) -> Handle:
        return self._tracer.start_span(self._name, **self._opts)

    def __enter__(self) -> Handle:
        handle = self._start()
        self._entered.append(handle)
        self._tracer.enter(handle)
        return handle

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        """End what this scope started: the handle active here if it is one of this
        scope's (a scope object shared by threads), else the last one it entered."""
        entered = self._entered
        if not entered:
            return
        handle = self._tracer.top()
        if handle in entered:
            entered.remove(handle)
        else:
            handle = entered.pop()
        self._tracer.exit(handle, exc)

    async def __aenter__(self) -> Handle:
        return self.__enter__()

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        self.__exit__(_type, exc, _tb)

    def __call__(self, fn: F) -> F:
        return self._tracer.decorate(fn, None, self._start)
