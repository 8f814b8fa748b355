"""What travels through the exporter: events and deferred items, the lane that turns
them into requests, the exporter's configuration, and a batch of encoded events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ._retry import COOLDOWN_MAX

__all__ = [
    "DEFAULT_ITEM_BYTES",
    "DEFAULT_MAX_QUEUE_BYTES",
    "THREAD_IMPORTS",
    "Batch",
    "BatchCap",
    "Deferred",
    "DeliveryError",
    "ErrorCallback",
    "Event",
    "EventResults",
    "ExporterConfig",
    "Lane",
]

Event = dict[str, Any]
# What an item is assumed to weigh when the caller gives no estimate (``submit``).
DEFAULT_ITEM_BYTES = 256
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
ErrorCallback = Callable[[Exception, list[Event]], None]
# What the flush thread may need, imported by the client on the creating thread (a fork
# during an import on our thread would leave the child a half-imported module): the
# transport (httpx, httpcore, certifi for its TLS context, the idna codec that the socket
# layer loads on a first connection), Retry-After dates (email.utils) and the
# suppression of OpenTelemetry instrumentation (if installed).
THREAD_IMPORTS = (
    "httpx",
    "httpcore",
    "certifi",
    "encodings.idna",
    "email.utils",
    "opentelemetry.context",
)


@dataclass(frozen=True)
class EventResults:
    """Per-event answers in a 2xx response (capture v1): indexes into the batch of the
    events to send again and of those the server dropped (with its reason); every other
    event was delivered."""

    retry: list[int]
    rejected: list[tuple[int, str]]


class Lane(Protocol):
    """How events are encoded and batched into requests for one endpoint. A lane that
    subclasses ``Lane`` inherits the defaults of ``batch_request`` and ``results``
    (one request per attempt from the payloads alone; a 2xx delivers the whole batch)."""

    max_event_bytes: int
    # A 400 on several events halves the batch (``True``) or drops it (``False``).
    split_400: bool
    # What the lane carries, as its warnings name it ("dropped 3 log record(s)"): the
    # exporter gives it to the lane's ``StatsRecorder``.
    noun: str = "event"
    # After a 413, later batches stay at the halved size, growing back by one per
    # delivered request up to ``max_batch_size`` (LOG-30, TRC-25); ``False``: every
    # batch starts at ``max_batch_size`` again.
    shrink_on_413: bool = False
    # The longest wait between two delivery cycles of a retained batch (``cooldown``).
    max_cooldown: float = COOLDOWN_MAX

    def encode(self, event: Event) -> bytes: ...

    def request(self, payloads: list[bytes]) -> tuple[str, bytes, dict[str, str]]: ...

    def envelope_overhead(self) -> int: ...

    def batch_request(self, batch: Batch) -> tuple[str, bytes, dict[str, str]]:
        """The request for the next attempt at ``batch`` (``batch.attempts`` already
        counts it); a lane whose envelope is stable across retries keeps it in
        ``batch.envelope``."""
        return self.request(batch.payloads)

    def results(self, batch: Batch, content: bytes) -> EventResults | None:
        """What a 2xx answer says of each event; ``None``: all of them delivered."""
        return None


class BatchCap:
    """How many items the next batch may take: ``max_batch_size``, or, for a lane with
    ``shrink_on_413``, half of a batch the server refused with 413, growing back by one
    per delivered request (LOG-30). Used by the one thread that takes and sends
    batches (the flush thread, or the sync sender under its lock)."""

    def __init__(self, maximum: int, lane: object) -> None:
        self.maximum = self.value = maximum
        self._adaptive = bool(getattr(lane, "shrink_on_413", False))

    def split(self, size: int, status: int | None) -> None:
        """A batch of ``size`` items was split after answer ``status`` (413 or 400)."""
        if self._adaptive and status == 413:
            self.value = max(1, min(self.value, size // 2))

    def delivered(self) -> None:
        """A request was delivered."""
        if self.value < self.maximum:
            self.value += 1


# A queue item whose event is built on the flush thread: ``(build, *args)``, turned into
# an event by ``build(*args)`` (``None`` if it is not one after all; the builder counts
# why). ``PostHogHandler`` queues log records this way, so that ``logger.info`` pays only
# for a tuple and an append.
Deferred = tuple[Any, ...]


class DeliveryError(Exception):
    """Why a batch was finally given up, passed to ``on_error``."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ExporterConfig:
    flush_at: int = 100
    flush_interval: float = 5.0
    max_queue_size: int = 10_000
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_batch_size: int = 1000
    max_batch_bytes: int = 5 * 1024 * 1024
    timeout: float = 10.0
    max_retries: int = 3
    max_retry_cycles: int = 8
    sync_mode: bool = False
    # On overflow, drop the oldest queued item to make room (the logs lane, LOG-22)
    # instead of refusing the incoming one.
    drop_oldest: bool = False


class Batch:
    """Events taken off the queue, with their encoded payloads (encoded once: the uuid,
    timestamp and bytes of an event never change across retries)."""

    __slots__ = ("attempts", "envelope", "events", "payloads")

    def __init__(self, events: list[Event], payloads: list[bytes]) -> None:
        self.events = events
        self.payloads = payloads
        self.attempts = 0  # requests made for this batch, across cycles
        self.envelope: Any = None  # the lane's per-batch state (``Lane.batch_request``)

    def __len__(self) -> int:
        return len(self.events)

    def halves(self) -> tuple[Batch, Batch]:
        mid = len(self.events) // 2
        return (
            Batch(self.events[:mid], self.payloads[:mid]),
            Batch(self.events[mid:], self.payloads[mid:]),
        )

    def select(self, indexes: list[int]) -> Batch:
        """The events at ``indexes``, as a batch."""
        return Batch([self.events[i] for i in indexes], [self.payloads[i] for i in indexes])

    def keep(self, indexes: list[int]) -> None:
        """Narrow to the events at ``indexes``: a partial retry resends only those, as the
        same batch (same envelope, attempts counting on)."""
        self.events = [self.events[i] for i in indexes]
        self.payloads = [self.payloads[i] for i in indexes]

    def split(self, max_count: int, budget: float) -> tuple[Batch, Batch | None]:
        """The head that fits ``max_count`` events and ``budget`` bytes (one event at
        least), and the rest (``None`` if nothing is left)."""
        size, count = 0, 0
        for payload in self.payloads[:max_count]:
            size += len(payload) + 1
            if size > budget and count:
                break
            count += 1
        if count == len(self.events):
            return self, None
        head = Batch(self.events[:count], self.payloads[:count])
        return head, Batch(self.events[count:], self.payloads[count:])

    def extend(self, other: Batch) -> None:
        self.events += other.events
        self.payloads += other.payloads

    def nbytes(self) -> int:
        """Encoded size: what the batch weighs toward ``max_queue_bytes`` while held."""
        return sum(len(p) for p in self.payloads)
