"""A clock for tests: time moves only when told to (or when the exporter backs off)."""

from __future__ import annotations

import threading
import weakref

from ..export import Clock


class FakeClock(Clock):
    """Drives the exporter's timers without real sleeps.

    Idle waits (flush interval, cool-down of a retained batch) block until ``advance``
    moves time past them or the exporter is notified. Backoff waits inside a delivery
    cycle return at once and move time forward by the wait; each is recorded in
    ``sleeps`` so tests can check, for instance, that ``Retry-After`` was honoured.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._conditions: weakref.WeakSet[threading.Condition] = weakref.WeakSet()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wait(self, cond: threading.Condition, timeout: float | None, *, idle: bool) -> None:
        if not idle and timeout is not None:
            with self._lock:
                self.sleeps.append(timeout)
                self._now += max(timeout, 0.0)
            return
        with self._lock:
            self._conditions.add(cond)
        # Woken by advance() or by the exporter's own notifications; a short real timeout
        # only guards against a notification that raced the registration above.
        cond.wait(0.05)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every idle waiter."""
        with self._lock:
            self._now += seconds
            conditions = list(self._conditions)
        for cond in conditions:
            with cond:
                cond.notify_all()
