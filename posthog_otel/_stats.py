"""Counters of what happened to events, and the ``ClientStats`` snapshot users read."""

from __future__ import annotations

import itertools
import logging
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
    "deduplicated",  # an $exception identical to one sent moments ago (storm protection)
    "before_send",  # a before_send hook returned None
    "before_send_error",  # a before_send hook raised (fail-closed)
    "rate_limited",  # over the logs lane's rate cap for the current window (LOG-28)
    "live_limit",  # a native span refused: max_live_spans were open (TRC-20)
    "span_age",  # a native span still open after max_span_age, never sent (TRC-20)
    "queue_full",  # max_queue_size reached
    "oversize",  # one event over the ~900 KiB limit, or refused alone with 413
    "serialization",  # an event that could not be encoded at all
    "rejected",  # a terminal 4xx answer
    "retries_exhausted",  # given up after max_retry_cycles failed delivery cycles
    "shutdown",  # still queued or in flight when close() ran out of time
    "evicted",  # the oldest queued item, dropped for a newer one (logs lane, LOG-22)
    "spool_full",  # the durable spool reached max_spool_bytes (spool_path)
)
# Drops of events refused before they entered the queue, and of events accepted into it:
# ``attempted == enqueued + sum(PRE_QUEUE_DROPS)``, ``enqueued == sent + queued + in_flight
# + spooled + sum(POST_QUEUE_DROPS)``.
PRE_QUEUE_DROPS = DROP_REASONS[: DROP_REASONS.index("queue_full") + 1]
POST_QUEUE_DROPS = DROP_REASONS[len(PRE_QUEUE_DROPS) :]
# Drops the application asked for: counted, and logged at DEBUG only (no warning).
INTENTIONAL_DROPS = frozenset({"disabled", "opted_out", "before_send", "deduplicated"})


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
    """Values the client repaired rather than dropped (``invalid_uuid``, ``invalid_timestamp``,
    ``flags_unavailable``: a ``send_feature_flags`` event sent without flag properties)."""
    attempted: int = 0
    """Every event handed to the client by any path. At every quiet moment
    ``attempted == enqueued + (drops before the queue)`` and ``enqueued == sent + queued +
    in_flight + spooled + (drops after acceptance)``: see ``PRE_QUEUE_DROPS`` and
    ``POST_QUEUE_DROPS``."""
    spooled: int = 0
    """With ``spool_path``: events left in the spool by ``close()`` (not delivered yet,
    e.g. the server was down): neither queued nor dropped, the next start sends them."""
    recovered: int = 0
    """With ``spool_path``: events an earlier process left in the spool, loaded (from
    the start, a part at a time as the queue drains) to be sent by this one (counted in
    ``attempted`` and ``enqueued`` too)."""
    thread_restarts: int = 0
    """How often a background thread (flush, flags worker, poller) was restarted after an
    unexpected error escaped its loop."""
    logs: ClientStats | None = None
    """The logs lane's own counters (``capture_log``), in the same shape: records instead
    of events, ``dropped["evicted"]`` for the oldest records dropped on overflow.
    ``None`` on the lane's own snapshot."""
    ai: ClientStats | None = None
    """The AI lane's own counters (``capture_ai``), in the same shape."""
    traces: ClientStats | None = None
    """The traces lane's own counters (finished spans: the native API's and the
    OpenTelemetry exporters' with ``traces=True``), in the same shape; live-span
    refusals and evictions as ``dropped["live_limit"]``/``dropped["span_age"]``."""


class StatsRecorder:
    """Thread-safe counters shared by the client (caller threads) and the exporter."""

    def __init__(self) -> None:
        self.noun = "event"
        """What is counted, as warnings name it: the exporter sets its lane's noun."""
        self.reset()

    def reset(self) -> None:
        """Start from zero with fresh locks (also used in a forked child, whose counters
        describe its own events and whose inherited locks may be held)."""
        self.lock = fork_safe_lock()
        # ``attempts()`` counts an event handed to the client: one GIL-atomic C call, no
        # lock on the caller's hot path. A fork keeps the counter object and moves the base.
        if not hasattr(self, "_attempts"):
            self._attempts = itertools.count()
            self.attempts = self._attempts.__next__
        self._attempts_base = peek_count(self._attempts)
        self.thread_restarts = 0
        self.sent = 0
        self.retries = 0
        self.failed_batches = 0
        self.spooled = 0
        self.recovered = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.corrected: dict[str, int] = {
            "invalid_uuid": 0,
            "invalid_timestamp": 0,
            "flags_unavailable": 0,
        }
        self.warner = RateLimitedWarner()

    @property
    def attempted(self) -> int:
        return peek_count(self._attempts) - self._attempts_base

    def drop(self, reason: str, count: int = 1, detail: str = "") -> None:
        """Count ``count`` dropped events and warn (rate-limited) naming the reason."""
        with self.lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.warn_drop(reason, count, detail)

    def warn_drop(self, reason: str, count: int, detail: str = "") -> None:
        """The rate-limited warning for a drop counted elsewhere (under another lock),
        with the number of events dropped since the previous one; a drop the
        application asked for (``INTENTIONAL_DROPS``) is only logged at DEBUG."""
        level = logging.DEBUG if reason in INTENTIONAL_DROPS else logging.WARNING
        self.warner.warn_count(
            reason, count, f"dropped %d {self.noun}(s): %s%s", reason, detail, level=level
        )

    def thread_restarted(self) -> None:
        with self.lock:
            self.thread_restarts += 1

    def correct(self, what: str, detail: str) -> None:
        with self.lock:
            self.corrected[what] = self.corrected.get(what, 0) + 1
        self.warner.warn(what, "%s", detail)

    def snapshot(self, *, queued: int, in_flight: int, retained: int, enqueued: int) -> ClientStats:
        """The counters, with the exporter's queue depths and accepted count."""
        attempted = self.attempted
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
                attempted=attempted,
                thread_restarts=self.thread_restarts,
                spooled=self.spooled,
                recovered=self.recovered,
            )


def peek_count(counter: itertools.count[int]) -> int:
    """The next value of an ``itertools.count`` without advancing it (``count(7)`` → 7)."""
    return int(repr(counter)[6:-1])
