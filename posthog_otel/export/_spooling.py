"""The batching exporter with a durable spool (``Client(spool_path=...)``).

Data path: ``submit`` (caller's thread: the same append as in memory, no SQLite) →
the *spool writer* thread, at most ``WRITE_TICK`` after an event is queued, builds and
encodes what is queued and writes it to the spool in one transaction (``_persist``):
from then on the event is *accepted* and survives a crash → the encoded events wait
in the carry, from which the flush thread takes its batches (it never encodes) → when
a batch is settled for good (delivered, or dropped for a counted reason) its rows are
deleted (``_ack``); a batch kept for retry keeps them.

The writer is a thread of its own so that the window holds while the flush thread
waits on a slow request or a backoff; the flush thread also persists what is queued
before it takes a batch (``flush()`` sends what was queued before it, and in
``sync_mode`` everything runs on the caller's thread). At start the writer opens the
spool and loads what earlier processes left (``SpoolStore.claim``), before anything
new; a part at a time (``_load_more``: while the queue is under half full), so that
the leftovers of a long outage never crowd out what is captured meanwhile. At
``close()`` what is queued is written too, and what the spool still holds counts as
``spooled``: the next start sends it.

Every use of SQLite runs in ``no_fork_during()``: a fork in the middle of one would
leave SQLite's own process-wide mutexes held for ever in the child, whose first open
of the spool would then hang.

A spool that cannot be opened or written (bad path, read-only directory, not a
database, disk full: any exception of the store) is given up with one warning:
delivery goes on in memory.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import orjson

from .._fork import fork_safe_condition, fork_safe_event, fork_safe_lock, no_fork_during
from .._log import RateLimitedWarner, logger, mark_internal_thread, suppress_instrumentation
from .._threads import start_supervised
from ._batch import Batch
from ._encode import encode_items
from ._exporter import BatchExporter
from ._spool import LEASE_SECONDS, ROW_OVERHEAD, SpoolStore, is_busy

__all__ = ["WRITE_TICK", "WRITE_WINDOW", "SpoolingExporter"]

# How often the writer looks at the queue while events arrive; idle, it sleeps until
# the next one. The documented window between a capture and its write (README,
# "Durable delivery") allows for the write itself and a busy machine.
WRITE_TICK = 0.02
WRITE_WINDOW = 0.1
_HEARTBEAT = LEASE_SECONDS / 4
_CLOSE_WAIT = 1.0  # close() waits at most this for the writer, within its timeout
_READY_WAIT = 5.0  # how long flush() waits for the spool to open (it may be locked)
_LOAD_PAGE = 1000  # leftovers read at once, at most


class SpoolingExporter(BatchExporter):
    """A ``BatchExporter`` whose accepted events are kept in a ``SpoolStore`` until
    PostHog acknowledges them."""

    _takes_pending = False

    def __init__(
        self, *args: Any, spool_path: str, spool_lane: str, max_spool_bytes: int, **kwargs: Any
    ) -> None:
        self._spool_path = spool_path
        self._spool_lane = spool_lane
        self._max_spool_bytes = max_spool_bytes
        super().__init__(*args, **kwargs)
        if not self._sync:  # leftovers of an earlier process are sent without waiting
            with self._cond:
                self._start_thread_locked()

    def _init_state(self) -> None:
        inherited: SpoolStore | None = getattr(self, "_store", None)
        if inherited is not None:  # a forked child: the parent's connection stays its own
            inherited.abandon()
        super()._init_state()
        self._store_lock = fork_safe_lock()  # every use of the store, in order
        self._writer_cond = fork_safe_condition(self._lock)
        self._store: SpoolStore | None = None
        self._opened = False
        self._ready = fork_safe_event()  # opened, leftovers loaded (or given up)
        self._rows: dict[int, int] = {}  # id(event) → its rowid, until acknowledged
        self._leftover: tuple[int, int] | None = None  # still on disk: rowids (after, upto]
        self._writer: threading.Thread | None = None
        self._close_deadline: float | None = None
        self._busy_warner = RateLimitedWarner(60.0)

    # ------------------------------------------------------------------ threads

    def _start_thread_locked(self) -> None:
        super()._start_thread_locked()
        if self._writer is None:
            self._writer = start_supervised(
                f"{self._thread_name}-spool",
                self._write_loop,
                on_restart=self._stats.thread_restarted,
                stopping=lambda: self._stop,
            )

    def _write_loop(self) -> None:
        """Persist what is queued every ``WRITE_TICK`` while events arrive; sleep when
        none do; keep this process's lease on its rows alive."""
        mark_internal_thread()
        suppress_instrumentation()
        beat = time.monotonic() + _HEARTBEAT
        while True:
            self._persist()
            if time.monotonic() >= beat:
                beat = time.monotonic() + _HEARTBEAT
                self._use_store(lambda store: store.heartbeat())
            with self._cond:
                if self._stop:
                    return
                if not self._pending and self._leftover is None:
                    self._writer_waiting = True
                    self._writer_cond.wait(max(beat - time.monotonic(), 0.0))
                    self._writer_waiting = False
                else:
                    self._writer_cond.wait(WRITE_TICK)
                if self._stop:
                    return

    # ------------------------------------------------------------------ the store

    def _persist(self, wait: float = -1) -> None:
        """Move what is queued to the carry, encoded and written to the spool (events
        that do not fit in ``max_spool_bytes`` are dropped, counted ``spool_full``)."""
        if not self._store_lock.acquire(timeout=wait):
            return
        try:
            if not self._opened:
                with no_fork_during():
                    self._open()
            elif self._leftover is not None:
                with no_fork_during():
                    self._load_more()
            with self._cond:
                if self._abandon or not self._pending:
                    return
                raw = list(self._pending)
                nbytes = sum(self._pending_bytes)
                self._pending.clear()
                self._pending_bytes.clear()
                self._bytes -= nbytes
                self._held += len(raw)  # on their way to the carry: still queued
            batch, failed = Batch([], []), list[tuple[str, str]]()
            skipped, _, _ = encode_items(
                raw, self._lane, self._stats, batch.events, batch.payloads, 0, math.inf, failed
            )
            with no_fork_during():
                full = self._write(batch)
            with self._cond:
                self._held -= len(raw)
                if self._abandon:
                    return  # close() counted them already (they are in the spool)
                self._not_events += skipped
                settled = skipped + len(failed) + full
                self._resolved += settled
                self._failures += settled - skipped
                with self._stats.lock:
                    for reason, _ in failed:
                        self._stats.dropped[reason] += 1
                    self._stats.dropped["spool_full"] += full
                if self._carry is None:
                    self._carry = batch if batch.events else None
                else:
                    self._carry.extend(batch)
                self._held += len(batch)
                self._bytes += batch.nbytes()
                # The flush thread (a flush() may have found these in transit, neither
                # queued nor in the carry), and flush() waiting on drops settled here.
                if settled or self._flushes.wanted(self._resolved) or self._held >= self._flush_at:
                    self._cond.notify_all()
        finally:
            self._store_lock.release()
        for reason, detail in failed:
            self._stats.warn_drop(reason, 1, detail)
        if full:
            self._stats.warn_drop("spool_full", full, f" (max_spool_bytes={self._max_spool_bytes})")

    def _write(self, batch: Batch) -> int:
        """Write ``batch`` to the spool (store lock held); drop from its tail what does
        not fit, and return how many that was."""
        store = self._store
        if store is None or not batch.events:
            return 0
        try:
            room, count = store.room(), 0
            for payload in batch.payloads:
                room -= len(payload) + ROW_OVERHEAD
                if room < 0:
                    break
                count += 1
            full = len(batch) - count
            if full:
                batch.keep(list(range(count)))
            rowids = store.append(batch.payloads)
        except Exception as exc:
            self._give_up_store(exc)
            return 0
        rows = self._rows
        for event, rowid in zip(batch.events, rowids, strict=True):
            rows[id(event)] = rowid
        return full

    def _open(self) -> None:
        """Open the spool and put what earlier processes left before everything else
        (store lock held). Failing, warn once and deliver from memory."""
        self._opened = True
        try:
            self._load()
        finally:
            self._ready.set()

    def _load(self) -> None:
        try:
            store = SpoolStore(
                self._spool_path, lane=self._spool_lane, max_bytes=self._max_spool_bytes
            )
        except Exception as exc:
            if self._give_up_store(exc) is False:
                self._opened = False  # locked by another process: open it later
            return
        self._store = store
        try:
            upto = store.claim()
        except Exception as exc:
            if self._give_up_store(exc) is False:
                self._store = None
                store.discard()
                self._opened = False
            return
        if upto:
            self._leftover = (0, upto)
            self._load_more()

    def _load_more(self) -> None:
        """Load the next part of the leftovers (store lock held), as much as keeps the
        queue under half full; the rest waits on disk for the queue to drain."""
        left, store = self._leftover, self._store
        if left is None or store is None:
            return
        with self._cond:
            if self._abandon or 2 * self._bytes >= self._max_bytes:
                return
            room = min(self._max_queue // 2 - self._held - len(self._pending), _LOAD_PAGE)
        if room <= 0:
            return
        try:
            rows = store.leftovers(*left, room)
        except Exception as exc:
            self._give_up_store(exc)
            return
        self._leftover = (rows[-1][0], left[1]) if len(rows) == room else None
        batch, unreadable = Batch([], []), []
        for rowid, payload in rows:
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                unreadable.append(rowid)
                continue
            if not isinstance(event, dict):
                unreadable.append(rowid)
                continue
            batch.events.append(event)
            batch.payloads.append(payload)
            self._rows[id(event)] = rowid
        if unreadable:
            logger.warning("the spool had %d unreadable row(s); deleted", len(unreadable))
            self._use_store(lambda s: s.ack(unreadable), locked=True)
        if not batch.events:
            return
        count, nbytes = len(batch.events), batch.nbytes()
        for _ in range(count):
            self._stats.attempts()
        with self._cond:
            if self._carry is not None:  # older than what it holds: sent first
                batch.extend(self._carry)
            self._carry = batch
            self._held += count
            self._bytes += nbytes
            self._accepted += count
            self._flushes.ask(self._accepted)  # sent now, not after the first flush_interval
            self._cond.notify_all()
            with self._stats.lock:
                self._stats.recovered += count
        logger.info("sending %d event(s) left in the spool by an earlier process", count)

    def _use_store(self, call: Any, *, locked: bool = False) -> None:
        """``call(store)`` under the store lock; a failure gives the spool up."""
        if not locked:
            self._store_lock.acquire()
        try:
            if self._store is not None:
                with no_fork_during():
                    call(self._store)
        except Exception as exc:
            self._give_up_store(exc)
        finally:
            if not locked:
                self._store_lock.release()

    def _give_up_store(self, exc: BaseException) -> bool:
        """Deliver from memory from now on (store lock held): one warning; ``True``.
        Another process holding the write lock (``is_busy``) passes: the events of the
        moment stay in memory only (warned at most once a minute) and the spool is
        used again at the next write; ``False``."""
        if is_busy(exc):
            self._busy_warner.warn(
                "spool_busy",
                "the spool at %r is locked by another process (%s); events are kept in "
                "memory until it is free",
                self._spool_path,
                exc,
            )
            return False
        store, self._store = self._store, None
        self._rows.clear()
        self._leftover = None  # what is still on disk waits for a later start
        if store is not None:
            store.discard()
        logger.warning(
            "the spool at %r cannot be used (%s: %s); events are kept in memory only",
            self._spool_path,
            type(exc).__name__,
            exc,
        )
        return True

    # ------------------------------------------------------------------ the exporter's hooks

    def flush(self, timeout: float | None = None) -> bool:
        """``BatchExporter.flush``; at start, what earlier processes left counts as
        queued before the call once the writer has loaded it (waited for, briefly)."""
        if not self._sync and not self._ready.is_set() and not self.on_worker_thread():
            started = time.monotonic()
            self._ready.wait(_READY_WAIT if timeout is None else min(timeout, _READY_WAIT))
            if timeout is not None:
                timeout = max(timeout - (time.monotonic() - started), 0.0)
        return super().flush(timeout)

    def _take_batch(self, *, asked: bool, first: bool) -> Batch | None:
        self._persist()
        return super()._take_batch(asked=asked, first=first)

    def _deliver(self, batch: Batch) -> bool:
        """Deliver, then delete the rows of what is settled (all but a retained part)."""
        events = list(batch.events)
        ok = super()._deliver(batch)
        with self._cond:
            if self._abandon:
                return ok  # close() counted them as spooled: they stay for the next start
            retained = self._retained
        kept = set() if retained is None else {id(event) for event in retained.events}
        # Every part was acknowledged as it settled; this catches what an unexpected
        # path settled without a batch (a no-op otherwise).
        self._acked(Batch([event for event in events if id(event) not in kept], []))
        return ok

    def _acked(self, batch: Batch) -> None:
        rows = self._rows
        rowids = [r for r in (rows.pop(id(e), None) for e in batch.events) if r is not None]
        if rowids:
            self._use_store(lambda store: store.ack(rowids))

    def _kept_at_shutdown_locked(self) -> int:
        """What is held or in flight and written to the spool (not the events of a
        moment it was locked by another process, nor any once it was given up)."""
        if self._store is None:
            return 0
        return min(len(self._rows), self._held + self._in_flight)

    def _give_up_on_shutdown(self) -> None:
        """Write what is still queued before counting: it is then kept, not lost."""
        with self._cond:
            self._writer_cond.notify_all()
        self._persist(wait=self._left(_CLOSE_WAIT))
        super()._give_up_on_shutdown()

    def _left(self, most: float) -> float:
        """What remains of ``close()``'s deadline, at most ``most`` seconds."""
        deadline = self._close_deadline
        return most if deadline is None else max(min(most, deadline - time.monotonic()), 0.0)

    def close(self, timeout: float | None = None) -> bool:
        """``BatchExporter.close``, then stop the writer and close the spool (what it
        holds is adopted by the next process that opens it)."""
        if timeout is not None and self._close_deadline is None:
            self._close_deadline = time.monotonic() + timeout
        delivered = super().close(timeout)
        with self._cond:
            writer = self._writer
            self._writer_cond.notify_all()
        if writer is not None and writer is not threading.current_thread():
            writer.join(self._left(_CLOSE_WAIT))
        # Not in time: the owner row stays, and a later start adopts the rows once
        # this process has ended.
        if self._store_lock.acquire(timeout=self._left(_CLOSE_WAIT)):
            try:
                store, self._store = self._store, None
                if store is not None:
                    try:
                        with no_fork_during():
                            store.close()
                    except Exception:
                        pass
            finally:
                self._store_lock.release()
        return delivered
