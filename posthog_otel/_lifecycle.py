"""A client's flush and close, and what happens to every open client at exit.

One deadline per call, shared by the flags worker, the flag poller and the exporter.
At interpreter exit (atexit, SIGTERM, a multiprocessing child's finalizer) the open
clients are *flushed*, not closed: atexit runs hooks in reverse order of registration,
so OpenTelemetry providers created earlier and ``logging.shutdown`` run after ours and
may still hand the clients spans and records. Whatever is captured after the hook is
sent at once, within what remains of the same deadline.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import threading
import time
from collections.abc import Callable

from . import _config, _shutdown
from ._ai import AiCapture
from ._flag_reads import FlagReads
from ._fork import fork_safe_lock
from ._log import logger
from ._logs import LogCapture
from ._stats import ClientStats, StatsRecorder
from ._traces import TraceCapture
from .export import BatchExporter
from .pipeline import Pipeline

__all__ = ["Lifecycle", "flush_on_exit", "flush_open_clients"]


class Lifecycle:
    """Flush, close and the exit hook for one client's parts."""

    def __init__(
        self,
        pipeline: Pipeline,
        exporter: BatchExporter,
        flag_reads: FlagReads,
        logs: LogCapture,
        ai: AiCapture,
        traces: TraceCapture,
        *,
        shutdown_timeout: float,
    ) -> None:
        self._ai = ai.exporter  # the AI lane (capture_ai): its own pipeline and counters
        self._ai_pipeline = ai.pipeline
        self._ai_stats = ai.stats
        self._pipeline = pipeline
        self._exporter = exporter
        self._logs = logs.exporter
        self._logs_stats = logs.stats
        self._traces = traces.exporter  # the traces lane: its own queue and counters
        self._traces_stats = traces.stats
        self._worker = pipeline.worker
        self._flag_reads = flag_reads
        self.shutdown_timeout = shutdown_timeout
        self._close_lock = fork_safe_lock()
        self.closed = False

    def register(self) -> None:
        """Hold this client's parts until ``close()``, so that its queue is flushed at
        exit even if the application dropped the client."""
        _live[id(self)] = self
        if len(_live) > _MANY_CLIENTS and not _warned_many:
            _warned_many.append(True)
            logger.warning(
                "%d PostHog clients are open at once: each keeps a flush thread and a "
                "connection until close() (or exit). Create one client and reuse it, or "
                "call close() on each client when done with it",
                len(_live),
            )

    def stats(self, recorder: StatsRecorder) -> ClientStats:
        """``Client.stats``: the counters with the queue depths. Events waiting in the
        flags worker for ``/flags`` count as ``queued`` (and ``enqueued``)."""
        analytics = _lane_stats(recorder, self._exporter, self._worker.counts())
        logs = _lane_stats(self._logs_stats, self._logs)
        ai = _lane_stats(self._ai_stats, self._ai, self._ai_pipeline.worker.counts())
        traces = _lane_stats(self._traces_stats, self._traces)
        return dataclasses.replace(analytics, logs=logs, ai=ai, traces=traces)

    def flush(self, timeout: float | None) -> bool:
        """``Client.flush``: everything queued before the call, through one delivery
        cycle; ``True`` if all of it was delivered."""
        try:
            deadline = _deadline(timeout)
            at_exit = self._pipeline.exit_deadline
            if at_exit is not None:  # at interpreter exit: one deadline for every flush
                deadline = at_exit if deadline is None else min(deadline, at_exit)
            self._logs.flush(0)  # the lanes send in parallel, within the one deadline
            self._traces.flush(0)
            self._ai.flush(0)
            drained = self._worker.drain(_remaining(deadline))
            drained = self._ai_pipeline.worker.drain(_remaining(deadline)) and drained
            delivered = self._exporter.flush(_remaining(deadline)) and drained
            if not self._ai.on_worker_thread():  # nor does the AI lane's
                delivered = self._ai.flush(_remaining(deadline)) and delivered
            if not self._exporter.on_worker_thread():  # on_error never waits on logs
                delivered = self._logs.flush(_remaining(deadline)) and delivered
                delivered = self._traces.flush(_remaining(deadline)) and delivered
            if (
                not delivered
                and at_exit is not None
                and not self.closed
                and not self._exporter.on_worker_thread()  # on_error cannot wait for itself
            ):
                _, queued, in_flight, _ = self._exporter.counts()
                _, log_queued, log_in_flight, _ = self._logs.counts()
                _, ai_queued, ai_in_flight, _ = self._ai.counts()
                _, span_queued, span_in_flight, _ = self._traces.counts()
                waiting, _ = self._worker.counts()
                waiting += self._ai_pipeline.worker.counts()[0]
                if (
                    (queued or in_flight or waiting or log_queued or log_in_flight)
                    or (ai_queued or ai_in_flight)
                    or (span_queued or span_in_flight)
                ):  # out of time or failing: count the loss
                    self.close(_remaining(at_exit))
            return delivered
        except Exception:
            logger.exception("flush failed unexpectedly")
            return False

    def close(self, timeout: float | None) -> bool:
        """``Client.close``: flush and stop within ``timeout`` (``None``:
        ``shutdown_timeout``); what is left then is counted as dropped (``shutdown``)."""
        deadline = _deadline(self.shutdown_timeout if timeout is None else timeout)
        with self._close_lock:
            self.closed = True
            self._pipeline.set_state(closed=True)
            self._ai_pipeline.set_state(closed=True)
        _live.pop(id(self), None)
        if self._exporter.on_worker_thread() or self._ai.on_worker_thread():
            # From on_error, on the flush thread: all of the rest (flag threads too)
            # finishes in a helper thread.
            threading.Thread(
                target=self._finish_close, args=(deadline,), name="posthog_otel-close"
            ).start()
            return False
        return self._finish_close(deadline)

    def _finish_close(self, deadline: float | None) -> bool:
        """Stop the flag threads, then flush and stop the exporter, by ``deadline``."""
        try:
            self._worker.close(_remaining(deadline))
            self._ai_pipeline.worker.close(_remaining(deadline))
            self._flag_reads.close(_remaining(deadline))
        except Exception:
            logger.exception("closing the flag poller failed")
        try:
            self._logs.flush(0)  # the lanes send in parallel, within the one deadline
            self._traces.flush(0)
            self._ai.flush(0)
            delivered = self._exporter.close(_remaining(deadline))
            delivered = self._ai.close(_remaining(deadline)) and delivered
            delivered = self._traces.close(_remaining(deadline)) and delivered
            return self._logs.close(_remaining(deadline)) and delivered
        except Exception:
            logger.exception("close failed unexpectedly")
            return False

    def _start_exit_flush(self, deadline: float) -> None:
        """Exit: later events are flushed at once; producers hand over what they hold;
        the poller stops (one still logging while the interpreter finalizes can crash
        it; loaded definitions stay usable); the exporter starts sending now."""
        pipeline = self._pipeline
        pipeline.exit_deadline = deadline
        pipeline.late_flush = self._late_flush
        self._ai_pipeline.exit_deadline = deadline
        self._ai_pipeline.late_flush = self._late_flush
        pipeline.run_producers()
        try:
            self._flag_reads.close(0)
            self._exporter.flush(0)
            self._logs.flush(0)
            self._traces.flush(0)
            self._ai.flush(0)
        except Exception:
            pass

    def _late_flush(self) -> None:
        self.flush(None)


def exit_hook_starter(sigterm: bool) -> Callable[[], None]:
    """What the exporter calls when its flush thread starts (events may now wait in the
    queue): have them flushed even if the process ends without atexit (SIGTERM when
    ``sigterm``, a multiprocessing child)."""
    return functools.partial(_shutdown.prepare_exit, _flush_all_at_exit, sigterm=sigterm)


def _lane_stats(
    recorder: StatsRecorder, exporter: BatchExporter, worker: tuple[int, int] = (0, 0)
) -> ClientStats:
    """One lane's counters with its queue depths; ``worker``: (events waiting in a flags
    worker, events it dropped at close), which count as queued and enqueued."""
    waiting, abandoned = worker
    enqueued, queued, in_flight, retained = exporter.counts()
    return recorder.snapshot(
        queued=queued + waiting,
        in_flight=in_flight,
        retained=retained,
        enqueued=enqueued + waiting + abandoned,
    )


def _deadline(timeout: float | None) -> float | None:
    """The monotonic time by which a call given ``timeout`` seconds must return."""
    return None if timeout is None else time.monotonic() + _config.capped_seconds(timeout)


def _remaining(deadline: float | None) -> float | None:
    """What is left of ``deadline`` (``None``: no limit), never negative."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


# ---------------------------------------------------------------------- every open client

# Every open client's parts (built with the exit hook), held strongly until ``close()``:
# a client the application dropped without closing it still has queued events, and its
# flush thread keeps it alive anyway. Plain dict operations, atomic under the GIL: no
# lock to recreate after a fork.
_live: dict[int, Lifecycle] = {}
_MANY_CLIENTS = 10  # more open clients than this at once is almost always a leak
_warned_many: list[bool] = []


def _open() -> list[Lifecycle]:
    return [item for item in list(_live.values()) if not item.closed]


def flush_on_exit() -> bool:
    """Flush every open client now, as at interpreter exit, for a process about to end
    where ``atexit`` will not run (Celery's prefork children: call it from
    ``worker_process_shutdown``; your own ``os._exit``). Each client gets its
    ``shutdown_timeout`` (they send in parallel) and stays open: later events are sent
    at once, within what is left of that time. ``True`` if everything was delivered.
    A process that lives on (a warm AWS Lambda) calls ``client.flush()`` instead."""
    return _flush_all_at_exit()


def flush_open_clients() -> bool:
    """Flush every open client (in parallel, each within its ``shutdown_timeout``)
    without any exit state: for an ASGI lifespan shutdown, which a test client may run
    many times in one process. ``True`` if everything was delivered."""
    clients = _open()
    started = time.monotonic()
    for client in clients:
        client._pipeline.run_producers()  # e.g. OpenTelemetry's span batch (zero-code)
        try:
            client._exporter.flush(0)  # every client starts sending now, in parallel
            client._logs.flush(0)
            client._traces.flush(0)
            client._ai.flush(0)
        except Exception:
            pass
    delivered = True
    for client in clients:
        remaining = max(started + client.shutdown_timeout - time.monotonic(), 0.0)
        delivered = client.flush(remaining) and delivered  # never raises
    return delivered


def _flush_all_at_exit() -> bool:
    """Flush every open client before the interpreter goes away (the flush threads are
    daemons, so they cannot hold the exit up), each within its ``shutdown_timeout``
    counted from the start of this hook (the clients send in parallel). A client that
    could not deliver in time is closed, counting what is left as ``shutdown``."""
    clients = _open()
    started = time.monotonic()
    for client in clients:
        client._start_exit_flush(started + client.shutdown_timeout)
    delivered = True
    for client in clients:
        try:
            # A quarter of the time is kept for close() should this flush fail.
            remaining = max(started + client.shutdown_timeout - time.monotonic(), 0.0)
            delivered = client.flush(remaining * 0.75) and delivered
        except Exception:
            delivered = False
    return delivered


atexit.register(_flush_all_at_exit)
