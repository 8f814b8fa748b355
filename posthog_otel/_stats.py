"""Counters of what happened to events, and the ``ClientStats`` snapshot users read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._fork import fork_safe_lock
from ._log import RateLimitedWarner

# Why events were dropped; each has a counter in ``ClientStats.dropped``.
DROP_REASONS = (
    "invalid",  # empty event name, missing distinct id, bad message type or field
    "disabled",  # the client is disabled (no API key, or disabled=True)
    "closed",  # enqueued after close()
    "opted_out",  # opt_out() is in force
    "before_send",  # a before_send hook returned None
    "before_send_error",  # a before_send hook raised (fail-closed)
    "queue_full",  # max_queue_size reached
    "oversize",  # one event over the ~900 KiB limit, or refused alone with 413
    "serialization",  # an event that could not be encoded at all
    "rejected",  # a terminal 4xx answer
    "retries_exhausted",  # given up after max_retry_cycles failed delivery cycles
    "shutdown",  # still queued when close() ran out of time
)


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of the client's delivery counters (``client.stats``)."""

    queued: int
    in_flight: int
    enqueued: int
    sent: int
    retries: int
    failed_batches: int
    retained: int
    dropped: Mapping[str, int]
    corrected: Mapping[str, int] = field(default_factory=dict)
    """Values the client repaired rather than dropped (``invalid_uuid``, ``invalid_timestamp``)."""


class StatsRecorder:
    """Thread-safe counters shared by the client (caller threads) and the exporter."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start from zero with fresh locks (also used in a forked child, whose counters
        describe its own events and whose inherited locks may be held)."""
        self.lock = fork_safe_lock()
        self.sent = 0
        self.retries = 0
        self.failed_batches = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.corrected: dict[str, int] = {"invalid_uuid": 0, "invalid_timestamp": 0}
        self.warner = RateLimitedWarner()

    def drop(self, reason: str, count: int = 1, detail: str = "") -> None:
        """Count ``count`` dropped events and warn (rate-limited) naming the reason."""
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.warner.warn(reason, "dropped %d event(s): %s%s", count, reason, detail)

    def correct(self, what: str, detail: str) -> None:
        with self.lock:
            self.corrected[what] = self.corrected.get(what, 0) + 1
        self.warner.warn(what, "%s", detail)

    def snapshot(self, *, queued: int, in_flight: int, retained: int, enqueued: int) -> ClientStats:
        """The counters, with the exporter's queue depths and accepted count."""
        with self.lock:
            return ClientStats(
                queued=queued,
                in_flight=in_flight,
                enqueued=enqueued,
                sent=self.sent,
                retries=self.retries,
                failed_batches=self.failed_batches,
                retained=retained,
                dropped=MappingProxyType(dict(self.dropped)),
                corrected=MappingProxyType(dict(self.corrected)),
            )
