"""The intake of a client's events: the seam every integration feeds through.

``client.pipeline`` is where an event enters the client, in data-flow order: it is
accepted or refused (closed, disabled, opted out: counted), assembled (``_assembly``),
filtered by ``before_send`` (``_before_send``), then handed to the batching exporter
(``export/``). An integration that wants the caller's thread to stay cheap *defers* the
build: it queues ``(build, *args)`` with a snapshot of the values of the moment, and
``build(*args)`` runs on the flush thread, turning them into a ``Capture`` and calling
``finish``::

    def emit(self, record):
        pipeline = self.client.pipeline
        pipeline.defer((self._build, snapshot_of(record)), nbytes=estimate)

    def _build(self, values):  # on the flush thread
        return self.client.pipeline.finish(capture_from(values), ctx=None)

Every event handed to the pipeline is counted in ``stats.attempted``, and every one it
does not queue in ``stats.dropped`` by reason.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ._assembly import CaptureFields, EventAssembler
from ._before_send import BeforeSendChain
from ._context import IdentityContext, _current
from ._flag_reads import FlagReads
from ._flags_worker import FlagsWorker
from ._log import describe, logger
from ._options import Event
from ._snapshot import encoded_bytes
from ._stats import StatsRecorder
from .export import DEFAULT_ITEM_BYTES, BatchExporter, Deferred
from .messages import Capture, Identify, Message

__all__ = ["DEFAULT_ITEM_BYTES", "CaptureFields", "Deferred", "Pipeline"]

_traceback_logged: set[tuple[str, str]] = set()  # (where, exception type) already shown


class Pipeline:
    """A client's intake (``client.pipeline``): accept or refuse, assemble, filter,
    queue. Never raises into the caller."""

    def __init__(
        self,
        assembler: EventAssembler,
        before_send: BeforeSendChain,
        exporter: BatchExporter,
        flag_reads: FlagReads,
        stats: StatsRecorder,
        *,
        disabled: bool,
    ) -> None:
        self._assembler = assembler
        self._before_send = before_send
        self._exporter = exporter
        self._queue = exporter.submit  # (item, estimated encoded bytes) -> bool
        self._flag_reads = flag_reads
        self._stats = stats
        self._attempt = stats.attempts  # counts every event handed to the client
        self._disabled = disabled
        self._closed = False
        self._opted_out = False
        self.accepting = not disabled
        """Whether events are taken now (not closed, disabled or opted out)."""
        self.exit_deadline: float | None = None
        """Set when the process exits (``time.monotonic()`` by which everything must be
        sent): from then on every queued event is flushed at once."""
        self.late_flush: Callable[[], object] | None = None
        self.producers: list[weakref.WeakMethod[Callable[[], object]]] = []
        self.on_producer: Callable[[], object] | None = None
        """Called by ``add_producer`` (the client's exit-hook starter): items may now
        wait outside this client's queues, and its flush threads be started by a
        foreign thread (OpenTelemetry's export thread), never the main one."""
        self.worker = FlagsWorker(flag_reads.fetch_for_event, self._deliver_completed, stats)

    # ------------------------------------------------------------------ state

    def set_state(self, *, closed: bool | None = None, opted_out: bool | None = None) -> None:
        """Record that the client closed or opted out (or in)."""
        if closed is not None:
            self._closed = closed
        if opted_out is not None:
            self._opted_out = opted_out
        self.accepting = not (self._closed or self._disabled or self._opted_out)

    @property
    def opted_out(self) -> bool:
        return self._opted_out

    # ------------------------------------------------------------------ seams

    def enqueue(self, message: Message) -> str | None:
        """``client.enqueue``: the message's uuid, or ``None`` if dropped (counted)."""
        self._attempt()
        try:
            if not self.accepting:
                self._refused()
                return None
            if type(message) is Capture:
                if message.send_feature_flags and message.flags is None:
                    return self._capture_with_flags(message)
                built = self._assembler.capture(message, _current.get())
            else:
                built = self._assembler.other(message)
            return None if built is None else self.submit(*built)
        except Exception as exc:
            self.unexpected("enqueue", exc)
            return None

    def capture(
        self,
        message: Capture,
        ctx: IdentityContext | None,
        keep: frozenset[str] | None = None,
    ) -> str | None:
        """A capture under an explicit identity context (the one a structlog event
        carried, or ``PERSONLESS``) instead of the caller's. With ``keep``, only those
        property names are sent (minimal flag events)."""
        self._attempt()
        try:
            if not self.accepting:
                self._refused()
                return None
            built = self._assembler.capture(message, ctx)
            if built is None:
                return None
            event, nbytes = built
            if keep is not None:
                event["properties"] = {k: v for k, v in event["properties"].items() if k in keep}
            return self.submit(event, nbytes)
        except Exception as exc:
            self.unexpected("capture", exc)
            return None

    def person(self, message: Identify, name: str) -> str | None:
        """``$set`` / ``$set_once`` (``client.set``/``set_once``): nothing without
        properties."""
        self._attempt()
        try:
            if not (message.properties or message.set_once):
                self._assembler.invalid(f"{name} called with no properties")
                return None
            if not self.accepting:
                self._refused()
                return None
            event = self._assembler.identify(message, name)
            return None if event is None else self.submit(event, encoded_bytes(event))
        except Exception as exc:
            self.unexpected(name, exc)
            return None

    def defer(self, item: Deferred, nbytes: int = DEFAULT_ITEM_BYTES) -> bool:
        """Queue ``item`` = ``(build, *args)``: ``build(*args)`` runs on the flush thread
        and returns the event (``finish``) or ``None``. ``args`` must already hold the
        values of the moment. ``nbytes``: an estimate of what the item keeps alive
        (``max_queue_bytes``). ``False`` if it was refused or the queue is full
        (counted)."""
        self._attempt()
        if not self.accepting:
            self._refused()
            return False
        if self._queue(item, nbytes):
            if self.late_flush is not None:
                self.late_flush()  # after the exit hook ran, nothing else would send it
            return True
        return False

    def finish(self, message: Capture | CaptureFields, ctx: IdentityContext | None) -> Event | None:
        """On the flush thread: a deferred capture's wire event, through
        ``before_send`` (``None``: invalid or filtered, counted). ``message``: a
        ``Capture``, or a plain capture's fields ``(event, distinct_id, properties,
        groups, timestamp)``, which cost the flush thread less."""
        event = self._assembler.deferred(message, ctx)
        if event is not None and self._before_send:
            return self._before_send.run(event)
        return event

    def refuse(self) -> None:
        """Count an event refused before it was built because the client is closed,
        disabled or opted out (check ``accepting`` first to skip the work)."""
        self._attempt()
        self._refused()

    def drop(self, reason: str, detail: str) -> None:
        """Count an event an integration decided not to queue (``reason``: one of
        ``DROP_REASONS`` counted before the queue, such as ``deduplicated``)."""
        self._attempt()
        self._stats.drop(reason, 1, detail)

    def correct(self, what: str, detail: str) -> None:
        """Count a value that was repaired rather than dropped (``stats.corrected``),
        with a rate-limited warning."""
        self._stats.correct(what, detail)

    def add_producer(self, producer: Callable[[], object]) -> None:
        """Have every exit flush call ``producer`` (a bound method, held weakly) first:
        something that holds items for this client, such as OpenTelemetry's span batch
        processor, whose provider may never shut down. Also prepares the exit flush
        now (``on_producer``: a SIGTERM handler when called on the main thread), since
        no flush thread of this client may ever start on the main thread."""
        self.producers.append(weakref.WeakMethod(producer))
        if self.on_producer is not None:
            self.on_producer()

    def run_producers(self) -> None:
        """Have what holds items for this client (``add_producer``) hand them over."""
        for ref in list(self.producers):
            producer = ref()
            if producer is not None:
                try:
                    producer()
                except Exception:
                    logger.debug("flushing into the client failed", exc_info=True)

    # ------------------------------------------------------------------ internals

    def submit(self, event: Event, nbytes: int) -> str | None:
        """``before_send``, then the queue; ``nbytes`` is the event's estimated size."""
        if self._before_send:
            result = self._before_send.run(event)
            if result is None:
                return None
            event = result
        if self._queue(event, nbytes):
            if self.late_flush is not None:
                self.late_flush()
            return event["uuid"]  # type: ignore[no-any-return]
        return None

    def _refused(self) -> None:
        """Count an event refused because the client is closed, disabled or opted out."""
        if self._closed:
            self._stats.drop("closed", 1, " (enqueue after close())")
        elif self._disabled:
            self._stats.drop("disabled", 1, " (client disabled)")
        else:
            self._stats.drop("opted_out", 1, " (client opted out)")
        return None

    def unexpected(self, what: str, exc: Exception) -> None:
        """An event that could not be built because something raised (usually a value
        whose ``__str__``, ``__bool__`` or iteration raises): counted as ``invalid`` and
        warned at most once per interval like every drop, so a flood of bad input never
        becomes a flood of tracebacks (the traceback goes to DEBUG, once per kind)."""
        self._stats.drop("invalid", 1, f": {what} raised {describe(exc)}; event dropped")
        kind = (what, type(exc).__qualname__)
        if kind not in _traceback_logged and len(_traceback_logged) < 100:
            _traceback_logged.add(kind)
            logger.debug("%s raised; the event was dropped", what, exc_info=True)
        return None

    def _capture_with_flags(self, message: Capture) -> str | None:
        """``send_feature_flags=True``: flag properties from local evaluation on this
        thread (microseconds, no request) when definitions are loaded; otherwise the
        flags worker fetches them with one ``/flags`` call and queues the event."""
        reads = self._flag_reads
        if reads.loaded():
            built = self._assembler.capture(message, _current.get())
            return None if built is None else self.submit(*built)
        without = replace(message, send_feature_flags=False)
        built = self._assembler.capture(without, _current.get())
        if built is None:
            return None
        event = built[0]  # its size grows by the flags: measured again when it completes
        groups: Mapping[str, Any] = message.groups if isinstance(message.groups, Mapping) else {}
        ctx = _current.get()
        device_id = None if ctx is None else ctx.device_id
        self.worker.submit(
            event, event["distinct_id"], groups, reads.context_overrides(), device_id
        )
        return event["uuid"]  # type: ignore[no-any-return]

    def _deliver_completed(self, event: Event) -> None:
        """A worker-completed event: ``before_send`` (on the worker), then the queue."""
        if self._before_send:
            result = self._before_send.run(event)
            if result is None:
                return
            event = result
        self._queue(event, encoded_bytes(event))
