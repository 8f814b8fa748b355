"""The one seam through which every timer of the exporter passes.

The flush interval, retry backoff and the cool-down of a retained batch all wait through
``Clock.wait``, so tests can drive them with a fake clock instead of real sleeps
(``posthog_otel.testing.FakeClock``).
"""

from __future__ import annotations

import threading
import time

_MAX_WAIT = min(threading.TIMEOUT_MAX, 86_400.0)  # a waiter re-checks its state anyway


class Clock:
    """Monotonic time plus a wait on a condition that a fake clock can take over.

    ``idle`` waits are the worker's "nothing to do until ..." waits (flush interval,
    cool-down); the others are backoff sleeps inside a delivery cycle. A fake clock may
    treat them differently: it blocks idle waits until time is advanced, and lets backoff
    waits pass at once while moving time forward.
    """

    def monotonic(self) -> float:
        raise NotImplementedError

    def wait(self, cond: threading.Condition, timeout: float | None, *, idle: bool) -> None:
        """Wait on ``cond`` (held by the caller) for up to ``timeout`` seconds."""
        raise NotImplementedError


class SystemClock(Clock):
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, timeout: float | None, *, idle: bool) -> None:
        # Within what a lock wait accepts: no configured interval can overflow it.
        cond.wait(None if timeout is None else min(max(timeout, 0.0), _MAX_WAIT))
