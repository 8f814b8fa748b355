"""The library's own diagnostics: one logger, and warnings rate-limited per reason.

Everything the library says goes to the ``posthog_otel`` logger so that a logging
handler (ours or anyone's) can recognise and ignore it. Warnings about dropped events
are emitted at most once per interval and reason, with the number of events dropped
since the last one, so a flood of bad input cannot turn into a flood of log records.
The records httpx and httpcore log for our own requests are filtered out (an
application logging at INFO would otherwise get a line per upload); ``debug=True``
shows what we do instead, on our own logger.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from ._fork import fork_safe_lock, import_fork_safe

logger = logging.getLogger("posthog_otel")

_WARN_INTERVAL = 10.0

# The loggers httpx and httpcore write to (records go to the logger named in the call,
# so a filter on the parent ``httpcore`` logger would not see them).
HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_DEBUG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class RateLimitedWarner:
    """Log one warning per reason per interval, carrying the number of occurrences."""

    def __init__(self, interval: float = _WARN_INTERVAL) -> None:
        self._interval = interval
        self._lock = fork_safe_lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}  # warnings not emitted, per reason
        self._pending: dict[str, int] = {}  # events dropped since the last warning

    def warn(self, reason: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self._interval:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return
            self._last[reason] = now
            suppressed = self._suppressed.pop(reason, 0)
        if suppressed:
            message += " (%d similar warnings suppressed)"
            args = (*args, suppressed)
        logger.warning(message, *args)

    def warn_count(
        self, reason: str, count: int, message: str, *args: object, level: int = logging.WARNING
    ) -> None:
        """Log that ``count`` events were dropped for ``reason``, at ``level``: once per
        interval, reporting every event dropped since the last record (``message`` gets
        that total as its first argument). Under ``debug=True`` each drop in between is
        logged at DEBUG too."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self._interval:
                self._pending[reason] = self._pending.get(reason, 0) + count
                total = 0
            else:
                self._last[reason] = now
                total = count + self._pending.pop(reason, 0)
        if not total:
            if debug_state.verbose:
                logger.debug(message, count, *args)
        elif total != count:
            logger.log(level, message + " (in all, since the last warning)", total, *args)
        else:
            logger.log(level, message, total, *args)


class _DebugState:
    verbose = False  # set by ``debug=True``: log every drop, not one per interval


debug_state = _DebugState()


class _ThreadState(threading.local):
    internal = False  # a class default: reading it is one attribute lookup
    requesting = False  # inside one of our HTTP requests (export/_transport.py)


thread_state = _ThreadState()


def mark_internal_thread() -> None:
    """Mark the current thread as one of ours (the flush thread, the flag poller).

    Integrations drop telemetry produced on such threads, so that our own uploads and
    their log lines can never feed back into the queue.
    """
    thread_state.internal = True


def is_internal_thread() -> bool:
    return thread_state.internal


def suppress_instrumentation() -> None:
    """Attach OpenTelemetry's suppress-instrumentation flags to the current thread's
    context, if OpenTelemetry is installed, so instrumented HTTP clients do not trace
    our own requests."""
    try:
        # Our threads call this first thing: the import must not overlap a fork.
        otel_context: Any = import_fork_safe("opentelemetry.context")
    except ImportError:
        return
    ctx = otel_context.get_current()
    for name in ("_SUPPRESS_INSTRUMENTATION_KEY", "_SUPPRESS_HTTP_INSTRUMENTATION_KEY"):
        key = getattr(otel_context, name, None)
        if key is not None:
            ctx = otel_context.set_value(key, True, ctx)
    otel_context.attach(ctx)


class _OwnRequestFilter(logging.Filter):
    """Drops the records httpx/httpcore log while this thread is making one of our
    requests; the application's own requests log as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not thread_state.requesting


_own_request_filter = _OwnRequestFilter()


def quiet_http_loggers() -> None:
    """Keep our own requests out of httpx's and httpcore's log records (idempotent;
    called when a transport is created, on the creating thread)."""
    for name in HTTP_LOGGERS:
        http_logger = logging.getLogger(name)
        if _own_request_filter not in http_logger.filters:
            http_logger.addFilter(_own_request_filter)


def enable_debug() -> None:
    """``debug=True``: every batch, retry and drop is logged at DEBUG on our logger, and
    printed on stderr when nothing else would show it (as the official SDK does)."""
    debug_state.verbose = True
    logger.setLevel(logging.DEBUG)
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_DEBUG_FORMAT))
        logger.addHandler(handler)


def describe(exc: BaseException) -> str:
    """An exception for a log line: its type and (short) message, never raising."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name
