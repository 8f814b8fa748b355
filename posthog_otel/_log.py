"""The library's own diagnostics: one logger, and warnings rate-limited per reason.

Everything the library says goes to the ``posthog_otel`` logger so that a logging
handler (ours or anyone's) can recognise and ignore it. Warnings about dropped events
are emitted at most once per interval and reason, with the count since the last one,
so a flood of bad input cannot turn into a flood of log records.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ._fork import fork_safe_lock, import_fork_safe

logger = logging.getLogger("posthog_otel")

_WARN_INTERVAL = 10.0


class RateLimitedWarner:
    """Log one warning per reason per interval, carrying the number of occurrences."""

    def __init__(self, interval: float = _WARN_INTERVAL) -> None:
        self._interval = interval
        self._lock = fork_safe_lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

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


class _ThreadState(threading.local):
    internal = False  # a class default: reading it is one attribute lookup


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
