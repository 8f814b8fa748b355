"""The flags worker: events captured with ``send_feature_flags=True`` while no flag
definitions are loaded wait here (never on the caller's thread, never on the flush
thread) for one ``/flags`` request, shared by the events of the same person and groups
within a short window, then join the queue. If ``/flags`` fails they go without flag
properties. These events are exempt from FIFO order."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .._fork import fork_safe_condition, reset_in_child
from .._log import logger, mark_internal_thread, suppress_instrumentation

SHARE_WINDOW = 1.0  # seconds during which one /flags answer serves the same person
MAX_WAITING = 10_000  # beyond this, events go at once without flag properties
_MAX_SHARED = 1_000

Event = dict[str, Any]
FetchFlags = Callable[[str, Mapping[str, Any]], "dict[str, Any] | None"]
Deliver = Callable[[Event], None]


class FlagsWorker:
    def __init__(self, fetch: FetchFlags, deliver: Deliver) -> None:
        self._fetch = fetch  # (distinct id, groups) -> event properties, or None
        self._deliver = deliver  # before_send + queue, on this worker's thread
        self._reset()
        reset_in_child(self._reset)  # a forked child starts with its own worker

    def _reset(self) -> None:
        self._cond = fork_safe_condition()
        self._waiting: deque[tuple[Event, str, Mapping[str, Any]]] = deque()
        self._shared: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]] = {}
        self._thread: threading.Thread | None = None
        self._busy = False
        self._closed = False

    def submit(self, event: Event, distinct_id: str, groups: Mapping[str, Any]) -> None:
        with self._cond:
            if not self._closed and len(self._waiting) < MAX_WAITING:
                self._waiting.append((event, distinct_id, groups))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="posthog_otel-flags-worker", daemon=True
                    )
                    self._thread.start()
                self._cond.notify()
                return
        self._deliver(event)  # overflow or closed: send without flag properties

    def _run(self) -> None:
        mark_internal_thread()
        suppress_instrumentation()
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                event, distinct_id, groups = self._waiting.popleft()
                self._busy = True
            try:
                properties = self._flags_for(distinct_id, groups)
                if properties:
                    for name, value in properties.items():
                        event["properties"].setdefault(name, value)
                self._deliver(event)
            except Exception:
                logger.exception("flags worker: an event could not be completed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _flags_for(self, distinct_id: str, groups: Mapping[str, Any]) -> dict[str, Any] | None:
        key = (distinct_id, tuple(sorted((str(k), str(v)) for k, v in groups.items())))
        now = time.monotonic()
        shared = self._shared.get(key)
        if shared is not None and now - shared[0] < SHARE_WINDOW:
            return shared[1]
        properties = self._fetch(distinct_id, groups)
        if len(self._shared) >= _MAX_SHARED:
            self._shared = {k: v for k, v in self._shared.items() if now - v[0] < SHARE_WINDOW}
        self._shared[key] = (time.monotonic(), properties)
        return properties

    def drain(self, timeout: float | None) -> bool:
        """Wait until every waiting event was handed on; ``False`` on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting and not self._busy, timeout)

    def close(self, timeout: float | None) -> None:
        """Finish what waits (within ``timeout``), then send the rest without flags."""
        self.drain(timeout)
        with self._cond:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for event, _, _ in left:
            self._deliver(event)
