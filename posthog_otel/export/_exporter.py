"""The batching exporter: a bounded FIFO queue drained by its own flush thread.

Data path: ``submit`` (caller's thread: an append under a lock) → ``_take_batch``
(flush thread: pop, serialize, cap by count and bytes) → ``_deliver`` (one delivery
cycle: send with retries and backoff, split on 413/400) → delivered, dropped with a
reason, or *retained* at the head of the queue for a later cycle.

Accounting is by counts, never by position: ``_accepted`` events entered the queue,
``_resolved`` of them left it for good (delivered or dropped), so ``flush`` knows when
everything enqueued before it has been dealt with, and events enqueued while a batch is
in flight are neither lost nor reordered. Every outcome goes through ``_settle``, under
the queue's lock: once ``close()`` has counted what was still queued or in flight as
``shutdown``, a late answer for an abandoned request counts nothing again.

The queue is bounded twice: ``max_queue_size`` events and ``max_queue_bytes`` bytes (the
caller's estimate per item, ``submit(item, nbytes)``, and the encoded size of what is
held for a retry).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .._fork import fork_safe_condition, fork_safe_lock, hold_across_fork, reset_in_child
from .._log import logger, mark_internal_thread, suppress_instrumentation
from .._stats import StatsRecorder
from .._threads import start_supervised
from ._batch import (
    DEFAULT_ITEM_BYTES,
    Batch,
    BatchCap,
    Deferred,
    DeliveryError,
    ErrorCallback,
    Event,
    ExporterConfig,
    Lane,
)
from ._clock import Clock, SystemClock
from ._encode import encode_items
from ._pacing import FlushRequests, give_way
from ._retry import Outcome, cooldown
from ._send import report_error, send_batch, warn_retained
from ._transport import HttpTransport

_ABANDON_GRACE = 0.2


class BatchExporter:
    """Owns the queue and the flush thread of one lane."""

    # ``False`` in ``SpoolingExporter``: batches come only from the carry, which its
    # spool writer fills with events written to the spool.
    _takes_pending = True
    _writer_cond: threading.Condition  # the spool writer's, woken when it is waiting

    def __init__(
        self,
        lane: Lane,
        transport: HttpTransport,
        config: ExporterConfig,
        *,
        stats: StatsRecorder,
        clock: Clock | None = None,
        on_error: ErrorCallback | None = None,
        thread_name: str = "posthog_otel-flush",
        on_thread_start: Callable[[], None] | None = None,
    ) -> None:
        self._lane = lane
        self._transport = transport
        self._config = config
        self._stats = stats
        stats.noun = lane.noun  # the lane's warnings name what it carries
        self._clock = clock or SystemClock()
        self._on_error = on_error
        self._thread_name = thread_name
        self._on_thread_start = on_thread_start
        self._flush_at = config.flush_at
        self._max_queue = config.max_queue_size
        self._max_bytes = config.max_queue_bytes
        self._sync = config.sync_mode
        self._drop_oldest = config.drop_oldest
        self._init_state()
        reset_in_child(self._after_fork_in_child)

    def _init_state(self) -> None:
        self._lock = fork_safe_lock()
        self._cond = fork_safe_condition(self._lock)  # the same lock: submit takes it bare
        hold_across_fork(self._lock)  # a child inherits the queue between two operations
        self._sync_lock = fork_safe_lock()
        # sync_mode: when the delivery running on a caller's thread must end (a
        # ``flush(timeout)`` or ``close(timeout)``); ``None`` for a capture's own send.
        self._sync_deadline: float | None = None
        self._pending: deque[Event | Deferred] = deque()
        self._pending_bytes: deque[int] = deque()  # the estimate of each pending item
        self._bytes = 0  # estimates of pending items + encoded size of carry and retained
        self._carry: Batch | None = None  # encoded, not yet sent: goes before _pending
        self._retained: Batch | None = None  # failed a cycle: goes before everything
        self._held = 0  # len(carry) + len(retained): counts toward max_queue_size
        self._retained_cycles = 0
        self._batch_cap = BatchCap(self._config.max_batch_size, self._lane)
        self._cooldown_until = 0.0
        self._in_flight = 0
        self._accepted = 0
        self._resolved = 0
        self._not_events = 0  # deferred items that turned out not to be events
        self._failures = 0
        self._flushes = FlushRequests()
        self._closing = False
        self._writer_waiting = False  # the spool writer waits for a first queued item
        self._stop = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._next_tick = self._clock.monotonic() + self._config.flush_interval

    # ------------------------------------------------------------------ caller side

    def submit(self, event: Event | Deferred, nbytes: int = DEFAULT_ITEM_BYTES) -> bool:
        """Append ``event``; ``False`` (counted) if the queue is full or closed. Never blocks
        on I/O (in ``sync_mode`` the delivery runs here, by design).

        ``nbytes`` is the caller's estimate of what the item keeps alive in memory; the
        queue refuses an item (``queue_full``) that would take the total over
        ``max_queue_bytes``.
        """
        pending = self._pending
        with self._lock:
            evicted = 0
            if self._drop_oldest and not self._closing:
                evicted = self._evict_oldest_locked(nbytes)
            if self._closing:
                refused = "closed"
            elif len(pending) + self._held >= self._max_queue:
                refused = "queue_full"
            elif self._bytes + nbytes > self._max_bytes:
                refused = "queue_bytes"
            else:
                pending.append(event)
                self._pending_bytes.append(nbytes)
                self._bytes += nbytes
                self._accepted += 1
                if self._thread is None and not self._sync:
                    self._start_thread_locked()
                if len(pending) == self._flush_at:
                    self._cond.notify()
                if self._writer_waiting:
                    self._writer_waiting = False
                    self._writer_cond.notify()
                refused = ""
        if evicted:
            self._stats.warn_drop("evicted", evicted, " (the oldest, to make room)")
        if refused:
            detail = ""
            if refused == "queue_full":
                detail = f" (max_queue_size={self._max_queue})"
            elif refused == "queue_bytes":
                refused = "queue_full"
                detail = f" (max_queue_bytes={self._max_bytes}: {nbytes} more would not fit)"
            self._stats.drop(refused, 1, detail)
            return False
        if self._sync:
            self._drain_sync(asked=False)
        return True

    def _evict_oldest_locked(self, nbytes: int) -> int:
        """``drop_oldest``: drop items from the head until one of ``nbytes`` fits."""
        count, limit, max_bytes = 0, self._max_queue - self._held, self._max_bytes - nbytes
        while self._pending and (len(self._pending) >= limit or self._bytes > max_bytes):
            self._pending.popleft()
            self._bytes -= self._pending_bytes.popleft()
            count += 1
        if count:  # counted as ``evicted`` (lock order: queue, then stats)
            self._resolved, self._failures = self._resolved + count, self._failures + count
            with self._stats.lock:
                self._stats.dropped["evicted"] += count
        return count

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued before the call through one delivery cycle.

        ``True`` when all of it was delivered; ``False`` on a failure (the events stay
        retained for a later cycle) or when ``timeout`` seconds passed (``0``: start the
        flush and return at once).
        """
        if self._sync:
            return self._drain_sync(timeout=timeout)
        if self.on_worker_thread():
            # Called from on_error on our own thread: it cannot wait for itself.
            with self._cond:
                self._flushes.ask(self._accepted)
            return False
        with self._cond:
            target = self._accepted
            if self._resolved >= target:
                return True
            failures = self._failures
            generation = self._flushes.ask(target)
            if (self._thread is None or not self._thread.is_alive()) and not self._stop:
                self._start_thread_locked()  # never wait on a thread that is gone
            thread = self._thread
            self._cond.notify_all()
            if not self._wait_locked(
                lambda: (
                    self._resolved >= target
                    or self._flushes.served >= generation
                    or self._thread is not thread
                ),
                timeout,
            ):
                return False
            return self._resolved >= target and self._failures == failures

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new events, flush, stop the thread. Idempotent; ``True`` if everything
        was delivered within ``timeout``. What could not be delivered is counted as
        dropped (``shutdown``, or the reason it failed) and never silently kept."""
        with self._cond:
            already = self._closing
            self._closing = True
        if already:
            return self._wait_stopped(timeout)
        # The abandon grace comes out of ``timeout``: close() never overruns it.
        grace = _ABANDON_GRACE if timeout is None else min(_ABANDON_GRACE, timeout / 4)
        deadline = None if timeout is None else time.monotonic() + timeout - grace
        delivered = self.flush(None if timeout is None else timeout - grace)
        with self._cond:
            self._stop = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        self._give_up_on_shutdown()
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            # A thread in backoff stops at once now; one blocked in a request cannot.
            thread.join(grace)
        if thread is None or not thread.is_alive():
            self._transport.close()
        return delivered

    def on_worker_thread(self) -> bool:
        """True when called on this exporter's flush thread (from ``on_error``)."""
        return self._thread is not None and self._thread is threading.current_thread()

    def counts(self) -> tuple[int, int, int, int]:
        """(enqueued, queued, in_flight, retained), read together under the queue's lock.
        ``enqueued`` leaves out deferred items that turned out not to be events: their
        builder counted them as drops before the queue."""
        with self._cond:
            retained = len(self._retained) if self._retained is not None else 0
            return (
                self._accepted - self._not_events,
                len(self._pending) + self._held,
                self._in_flight,
                retained,
            )

    # ------------------------------------------------------------------ flush thread

    def _start_thread_locked(self) -> None:
        if self._on_thread_start is not None:
            try:  # from now on events wait in the queue: the owner prepares for exit
                self._on_thread_start()
            except Exception:  # best effort; never log here, under the queue's lock
                pass
        self._thread = start_supervised(
            self._thread_name,
            self._run,
            on_restart=self._stats.thread_restarted,
            on_give_up=self._thread_gave_up,
            stopping=lambda: self._stop,
        )

    def _thread_gave_up(self) -> None:
        """The flush thread crashed too often and ended: wake anyone waiting on it; the
        next ``submit`` or ``flush`` starts a fresh one."""
        with self._cond:
            if self._thread is threading.current_thread():
                self._thread = None
            self._cond.notify_all()

    def _run(self) -> None:
        mark_internal_thread()
        suppress_instrumentation()
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    now = self._clock.monotonic()
                    explicit = self._flushes.wanted(self._resolved)
                    if self._should_send_locked(now, explicit):
                        break
                    if now >= self._next_tick:
                        self._next_tick = now + self._config.flush_interval
                    self._clock.wait(self._cond, self._next_wake_locked(now) - now, idle=True)
                generation = self._flushes.asked
                self._next_tick = now + self._config.flush_interval
            try:
                self._drain(asked=False)
            except BaseException:
                # Nothing may stay in flight forever: what this cycle held is dropped
                # (counted); the supervisor logs the error and runs the loop again.
                self._settle_in_flight("rejected", " (internal error while sending)")
                raise
            finally:
                with self._cond:
                    self._flushes.serve(generation)
                    self._cond.notify_all()

    def _should_send_locked(self, now: float, explicit: bool) -> bool:
        if self._retained is not None:
            return explicit or now >= self._cooldown_until
        if not self._pending and not self._held:  # held: the carry (and, spooling, in transit)
            return False
        queued = len(self._pending) + self._held
        return explicit or queued >= self._flush_at or now >= self._next_tick

    def _next_wake_locked(self, now: float) -> float:
        if self._retained is not None:
            return self._cooldown_until
        return self._next_tick

    def _drain(self, *, asked: bool) -> bool:
        """Send batches until the queue is empty (a timer or size trigger stops once fewer
        than ``flush_at`` remain); stop at the first batch that has to be retained.
        ``asked``: sync mode's ``flush``; the flush thread checks per batch for a flush."""
        first = True
        deadline = self._sync_deadline
        while not self._abandon:
            if deadline is not None and time.monotonic() >= deadline:
                return False  # out of time: what is left stays queued
            batch = self._take_batch(asked=asked, first=first)
            if batch is None:
                return True
            first = False
            if not self._deliver(batch):
                return False
        return False

    def _drain_sync(self, *, asked: bool = True, timeout: float | None = None) -> bool:
        """sync_mode: deliver on the caller's thread. With ``timeout``, neither waiting for
        another caller's delivery nor this one's requests and backoff outlast it (what is
        not delivered by then stays queued, for ``close()`` to count)."""
        if not self._sync_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            self._sync_deadline = None if timeout is None else time.monotonic() + timeout
            with self._cond:
                failures = self._failures
            try:
                ok = self._drain(asked=asked)
            except Exception:  # on the caller's thread: count, log, never raise
                self._settle_in_flight("rejected", " (internal error while sending)")
                logger.exception("posthog_otel: unexpected error while sending")
                ok = False
            with self._cond:
                return ok and self._failures == failures
        finally:
            self._sync_deadline = None
            self._sync_lock.release()

    def _take_batch(self, *, asked: bool, first: bool) -> Batch | None:
        """The next batch to send: the retained one, else up to ``max_batch_size`` events
        from the head of the queue, encoded here (giving way to the application between
        slices, ``_pacing.give_way``, unless a flush waits) and capped at ``max_batch_bytes``."""
        config = self._config
        budget = config.max_batch_bytes - self._lane.envelope_overhead()
        while True:
            with self._cond:
                explicit = asked or (not self._sync and self._flushes.wanted(self._resolved))
                if self._retained is not None:
                    if not explicit and self._clock.monotonic() < self._cooldown_until:
                        return None
                    batch, self._retained = self._retained, None
                    self._held -= len(batch)
                    self._bytes -= batch.nbytes()
                    self._in_flight = len(batch)
                    return batch
                carry = self._carry
                queued = len(carry) if carry is not None else 0
                if self._takes_pending:
                    queued += len(self._pending)
                if queued == 0 or (not explicit and not first and queued < self._flush_at):
                    return None
                batch, self._carry = (
                    (Batch([], []), None)
                    if carry is None
                    else carry.split(self._batch_cap.value, budget)
                )
                self._held -= len(batch)
                self._bytes -= batch.nbytes()
                take = self._batch_cap.value - len(batch)
                take = min(take, len(self._pending)) if self._takes_pending else 0
                popleft = self._pending.popleft
                raw = [popleft() for _ in range(take)]
                pop_bytes = self._pending_bytes.popleft
                sizes = [pop_bytes() for _ in range(take)]
                self._bytes -= sum(sizes)
                self._in_flight = len(batch) + take
            size = sum(len(p) + 1 for p in batch.payloads)
            failed: list[tuple[str, str]] = []
            skipped, stop, overflow = encode_items(
                raw,
                self._lane,
                self._stats,
                batch.events,
                batch.payloads,
                size,
                budget,
                failed,
                None if explicit or self._sync else self._give_way,
            )
            for reason, detail in failed:
                self._settle(1, reason, detail)
            if overflow is not None:
                self._put_back(raw, sizes, stop, *overflow)
            with self._cond:
                if skipped:
                    # Not events after all: the builder counted each as a drop before the
                    # queue, so they leave ``enqueued`` rather than count as resolved drops.
                    self._not_events += skipped
                    if self._abandon:  # close() counted them as shutdown meanwhile: undo
                        with self._stats.lock:
                            self._stats.dropped["shutdown"] -= skipped
                    else:
                        self._resolved += skipped
                    self._cond.notify_all()
                if not self._abandon:
                    self._in_flight = len(batch)
            if batch.events:
                return batch

    def _give_way(self) -> None:
        if self._abandon or self._flushes.wanted(self._resolved):
            return  # a flush() or close() began waiting while this batch was encoded
        backlog = len(self._pending) + self._held + self._in_flight
        give_way(backlog, self._max_queue, self._bytes, self._max_bytes)

    def _put_back(
        self,
        raw: list[Event | Deferred],
        sizes: list[int],
        index: int,
        event: Event,
        payload: bytes,
    ) -> None:
        """Return what did not fit in this batch to the head of the queue, in order."""
        carry = Batch([event], [payload])
        with self._cond:
            if self._abandon:
                return  # close() already counted these as shutdown
            self._pending.extendleft(reversed(raw[index + 1 :]))
            self._pending_bytes.extendleft(reversed(sizes[index + 1 :]))
            self._bytes += sum(sizes[index + 1 :]) + carry.nbytes()
            self._carry = carry
            self._held += 1
            self._in_flight -= len(raw) - index  # back in the queue: not in flight any more

    def _deliver(self, batch: Batch) -> bool:
        """One delivery cycle for ``batch``; ``False`` if part of it had to be retained."""
        work: deque[Batch] = deque([batch])
        while work:
            part = work.popleft()
            outcome, status, retry_after, error = send_batch(
                part,
                self._lane,
                self._transport,
                self._config,
                self._stats,
                deadline=self._sync_deadline,
                abandoned=lambda: self._abandon,
                sleep=self._sleep,
                delivered=self._delivered,
                give_up=self._give_up,
            )
            if outcome is Outcome.DELIVERED:
                self._delivered(part)
                self._batch_cap.delivered()
            elif outcome is Outcome.SPLIT and len(part) > 1:
                self._batch_cap.split(len(part), status)
                first, second = part.halves()
                work.appendleft(second)
                work.appendleft(first)
            elif outcome is Outcome.RETRY:
                for rest in work:
                    part.extend(rest)
                self._retain(part, retry_after, error)
                return False
            else:
                reason = "oversize" if status == 413 else "rejected"
                self._give_up(part, reason, error)
        with self._cond:
            self._retained_cycles = 0
        return True

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            deadline = self._clock.monotonic() + seconds
            while not self._abandon:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    return
                self._clock.wait(self._cond, remaining, idle=False)

    def _retain(self, batch: Batch, retry_after: float | None, error: DeliveryError) -> None:
        with self._cond:
            self._retained_cycles += 1
            cycles = self._retained_cycles
            give_up = cycles >= self._config.max_retry_cycles or self._abandon
            if not give_up:
                self._retained = batch
                self._held += len(batch)
                self._bytes += batch.nbytes()
                self._in_flight = 0
                wait = cooldown(cycles, retry_after, self._lane.max_cooldown)
                self._cooldown_until = self._clock.monotonic() + wait
        if give_up:
            with self._cond:
                self._retained_cycles = 0
            reason = "shutdown" if self._abandon else "retries_exhausted"
            self._give_up(batch, reason, error)
        else:
            warn_retained(self._stats, len(batch), error, cycles, self._config.max_retry_cycles)

    def _give_up(self, batch: Batch, reason: str, error: DeliveryError) -> None:
        """Drop ``batch`` for ``reason``; ``on_error`` runs before the drop is settled, so a
        ``flush()`` that sees the failure also sees the callback's effects."""
        with self._cond:
            if self._abandon:
                return  # close() counted this batch as shutdown already
        if self._on_error is not None:
            report_error(self._on_error, error, batch.events, self._stats)
        self._acked(batch)
        self._settle(len(batch), reason, f": {error}", failed_batch=True)

    def _delivered(self, part: Batch) -> None:
        self._acked(part)
        self._settle(len(part))

    def _acked(self, batch: Batch) -> None:
        """``batch`` is settled for good (before ``flush()`` sees it): a spool deletes it."""

    def _settle(
        self, count: int, reason: str = "", detail: str = "", *, failed_batch: bool = False
    ) -> bool:
        """Resolve ``count`` in-flight events: sent, or dropped for ``reason`` (counted and
        warned). ``False`` and nothing counted when ``close()`` already counted them as
        ``shutdown`` (an abandoned request that completed late is never counted as sent)."""
        stats = self._stats
        with self._cond:
            if self._abandon:
                return False
            self._resolved += count
            self._in_flight = max(self._in_flight - count, 0)
            with stats.lock:  # lock order: queue, then stats (never the other way)
                if reason:
                    stats.dropped[reason] = stats.dropped.get(reason, 0) + count
                    stats.failed_batches += failed_batch
                else:
                    stats.sent += count
            if reason:
                self._failures += count
            self._cond.notify_all()
        if reason:
            stats.warn_drop(reason, count, detail)  # outside the lock: it may log
        return True

    def _settle_in_flight(self, reason: str, detail: str) -> None:
        """Drop whatever is still in flight (after an unexpected error in a cycle)."""
        with self._cond:
            count = self._in_flight
        if count:
            self._settle(count, reason, detail)

    # ------------------------------------------------------------------ shutdown, fork

    def _wait_locked(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        if timeout is None:
            while not predicate():
                self._cond.wait()
            return True
        return self._cond.wait_for(predicate, timeout)

    def _wait_stopped(self, timeout: float | None) -> bool:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            return self._resolved >= self._accepted

    def _give_up_on_shutdown(self) -> None:
        """Stop retrying and count whatever is still queued as lost at shutdown."""
        with self._cond:
            if self._abandon:
                return
            left = len(self._pending) + self._held + self._in_flight
            kept = self._kept_at_shutdown_locked()  # in the spool, for the next start
            self._abandon = True
            self._stop = True
            self._pending.clear()
            self._pending_bytes.clear()
            self._bytes = 0
            self._carry = self._retained = None
            self._held = 0
            self._in_flight = 0  # a request still running is abandoned: counted here
            self._resolved += left
            left -= kept
            self._failures += left
            with self._stats.lock:
                self._stats.dropped["shutdown"] += left
                self._stats.spooled += kept
            self._cond.notify_all()
        if left:
            self._stats.warn_drop("shutdown", left, " (close() ran out of time)")

    def _kept_at_shutdown_locked(self) -> int:
        """How many of the events left at shutdown stay in a spool (none here)."""
        return 0

    def _after_fork_in_child(self) -> None:
        """A forked child starts with an empty queue and no thread; the parent keeps and
        sends what it had. Our HTTP pool belongs to the parent, so it is dropped too."""
        closing = self._closing
        self._init_state()
        self._closing = closing
        self._stats.reset()
        self._transport.reset_after_fork()
