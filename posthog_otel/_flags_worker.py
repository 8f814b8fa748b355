"""The flags worker: events captured with ``send_feature_flags=True`` while no flag
definitions are loaded wait here (never on the caller's thread, never on the flush
thread) for one ``/flags`` request, shared by the events of the same person and groups
within a short window, then join the queue. If ``/flags`` fails they go without flag
properties: whatever goes wrong with the flags (an error, a ``groups`` value whose
``str()`` raises), the event is sent without them and counted in
``stats.corrected["flags_unavailable"]``. These events are exempt from FIFO order, and
count as ``queued`` while they wait here. The thread is supervised (``_threads``)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from ._fork import fork_safe_condition, reset_in_child
from ._log import logger, mark_internal_thread, suppress_instrumentation
from ._stats import StatsRecorder
from ._threads import start_supervised

SHARE_WINDOW = 1.0  # seconds during which one /flags answer serves the same person
MAX_WAITING = 10_000  # beyond this, events go at once without flag properties
_MAX_SHARED = 1_000
_HANDING_WAIT = 1.0  # close(): how long an event being queued (before_send) may take

Event = dict[str, Any]
# The person and group overrides of the identity context the event was captured in.
Overrides: TypeAlias = "tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]] | None"
FetchFlags = Callable[[str, Mapping[str, Any], Overrides, "str | None"], "dict[str, Any] | None"]
Deliver = Callable[[Event], None]
# An event waiting for /flags: (event, distinct id, groups, overrides, device id).
_Waiting: TypeAlias = "tuple[Event, str, Mapping[str, Any], Overrides, str | None]"


class FlagsWorker:
    def __init__(
        self, fetch: FetchFlags, deliver: Deliver, stats: StatsRecorder | None = None
    ) -> None:
        # (distinct id, groups, overrides, device id) -> event properties, or None
        self._fetch = fetch
        self._deliver = deliver  # before_send + queue, on this worker's thread
        self._stats = stats
        self._reset()
        reset_in_child(self._reset)  # a forked child starts with its own worker

    def _reset(self) -> None:
        self._cond = fork_safe_condition()
        self._waiting: deque[_Waiting] = deque()
        self._shared: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]] = {}
        self._thread: threading.Thread | None = None
        self._busy = False
        self._closed = False
        self._abandoned = 0  # events counted as ``shutdown`` by close()
        self._current_abandoned = False  # the event being completed was one of them
        self._handing = False  # the event being completed is being queued: not abandonable

    def counts(self) -> tuple[int, int]:
        """(events held here now, events dropped here as ``shutdown``): the held ones
        count as ``queued`` and both as ``enqueued`` in the client's stats."""
        with self._cond:
            held = len(self._waiting) + (self._busy and not self._current_abandoned)
            return held, self._abandoned

    def submit(
        self,
        event: Event,
        distinct_id: str,
        groups: Mapping[str, Any],
        overrides: Overrides = None,
        device_id: str | None = None,
    ) -> None:
        """Hold ``event`` until ``/flags`` answers for its person, with the overrides and
        device id of the identity context it was captured in (this thread has none)."""
        with self._cond:
            if not self._closed and len(self._waiting) < MAX_WAITING:
                self._waiting.append((event, distinct_id, groups, overrides, device_id))
                self._ensure_thread_locked()
                self._cond.notify()
                return
            why = "the client is closing" if self._closed else f"{MAX_WAITING} events wait"
        if self._stats is not None:  # overflow or closed: sent without flag properties
            self._stats.correct(
                "flags_unavailable",
                f"send_feature_flags: {why}; {event.get('event')!r} sent without flag properties",
            )
        self._deliver(event)

    def _ensure_thread_locked(self) -> None:
        """Start the worker thread if there is none (or it is gone)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = start_supervised(
                "posthog_otel-flags-worker",
                self._run,
                on_restart=None if self._stats is None else self._stats.thread_restarted,
                on_give_up=self._thread_gave_up,
                stopping=lambda: self._closed,
            )

    def _thread_gave_up(self) -> None:
        with self._cond:
            if self._thread is threading.current_thread():
                self._thread = None
            self._busy = self._handing = False
            self._cond.notify_all()

    def _run(self) -> None:
        mark_internal_thread()
        suppress_instrumentation()
        while True:
            with self._cond:
                self._busy = self._handing = False
                self._cond.notify_all()
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                waiting = self._waiting.popleft()
                self._busy = True
                self._current_abandoned = False
            self._complete(waiting)

    def _complete(self, waiting: _Waiting) -> None:
        """Add flag properties if ``/flags`` answers, then hand the event on: whatever
        goes wrong with the flags, the event is sent without them (counted)."""
        event = waiting[0]
        try:
            properties = self._flags_for(*waiting[1:])
            if properties:
                for name, value in properties.items():
                    event["properties"].setdefault(name, value)
        except Exception as exc:
            if self._stats is not None:
                self._stats.correct(
                    "flags_unavailable",
                    f"send_feature_flags: /flags failed ({type(exc).__name__}: {exc}); "
                    f"{event.get('event')!r} sent without flag properties",
                )
        with self._cond:
            if self._current_abandoned:
                return  # close() gave up on it and counted it as shutdown
            self._handing = True
        try:
            self._deliver(event)
        except Exception:
            logger.exception("flags worker: an event could not be queued")
            if self._stats is not None:
                self._stats.drop("invalid", 1, " (internal error)")

    def _flags_for(
        self,
        distinct_id: str,
        groups: Mapping[str, Any],
        overrides: Overrides,
        device_id: str | None,
    ) -> dict[str, Any] | None:
        if overrides is not None:  # a request's own overrides: its answer is its own
            return self._fetch(distinct_id, groups, overrides, device_id)
        group_key = tuple(sorted((str(k), str(v)) for k, v in groups.items()))
        key = (distinct_id, group_key, device_id)
        now = time.monotonic()
        shared = self._shared.get(key)
        if shared is not None and now - shared[0] < SHARE_WINDOW:
            return shared[1]
        properties = self._fetch(distinct_id, groups, None, device_id)
        if len(self._shared) >= _MAX_SHARED:
            self._shared = {k: v for k, v in self._shared.items() if now - v[0] < SHARE_WINDOW}
        self._shared[key] = (time.monotonic(), properties)
        return properties

    def drain(self, timeout: float | None) -> bool:
        """Wait until every waiting event was handed on; ``False`` on timeout. Never
        waits on a thread that is gone: one is started if events wait without one."""
        with self._cond:
            if self._waiting and not self._closed:
                self._ensure_thread_locked()
            thread = self._thread
            return self._cond.wait_for(
                lambda: (not self._waiting and not self._busy) or self._thread is not thread,
                timeout,
            )

    def close(self, timeout: float | None) -> None:
        """Finish what waits (within ``timeout``), then send the rest without flags; an
        event still waiting on ``/flags`` after that is counted as ``shutdown``."""
        started = time.monotonic()
        self.drain(timeout)
        wait = _HANDING_WAIT
        if timeout is not None:
            wait = min(wait, max(timeout - (time.monotonic() - started), 0.0))
        with self._cond:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()
            if self._thread is not threading.current_thread():
                # An event already being queued (no I/O left) finishes; only one still
                # waiting for /flags is given up.
                self._cond.wait_for(lambda: not (self._busy and self._handing), wait)
            abandoned = self._busy and not self._handing and not self._current_abandoned
            if abandoned:
                self._current_abandoned = True
                self._abandoned += 1
            self._cond.notify_all()
        if abandoned and self._stats is not None:
            with self._stats.lock:
                self._stats.dropped["shutdown"] += 1
            self._stats.warn_drop("shutdown", 1, " (still waiting for /flags at close())")
        for event, *_ in left:
            if self._stats is not None:
                self._stats.correct(
                    "flags_unavailable",
                    f"send_feature_flags: closing; {event.get('event')!r} sent without flags",
                )
            self._deliver(event)
