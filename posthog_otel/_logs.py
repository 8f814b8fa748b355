"""``client.capture_log``: a log record for PostHog Logs, on its own lane.

The record is plain data taken at capture time (LOG-10/14/21): the timestamp, severity,
body, the caller's attributes merged over the identity context's ``posthogDistinctId``
and ``sessionId``, and the trace ids (given, or the active OpenTelemetry span's: LOG-32).
It is encoded as OTLP only when its batch is sent (``export``'s logs lane), on the logs
exporter's own thread and queue: a slow logs endpoint never delays analytics events.

Gates, in the contract's order (LOG-04): disabled, opted out, blank body. Each drop is
counted in ``client.stats.logs.dropped``. ``capture_log`` works whenever the client does
(LOG-05): there is no remote or per-call switch. Not yet here (issue 14): the ``logs``
``before_send`` chain and the rate cap (LOG-28/29), the ``client.logger`` facade.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._assembly import LIB_NAME
from ._context import _current, active_span_ids
from ._fork import fork_safe_lock
from ._snapshot import EVENT_BYTES, snapshot_value, snapshot_values
from ._stats import StatsRecorder
from ._version import __version__
from .export import (
    MAX_OTLP_BATCH_BYTES,
    BatchExporter,
    Clock,
    ExporterConfig,
    HttpTransport,
    LogsLane,
    resource_attributes,
    valid_flags,
    valid_hex_id,
)

if TYPE_CHECKING:
    from ._options import ClientConfig

__all__ = ["LOGS_DEFAULTS", "LogCapture", "build_log_capture", "severity"]

# The logs lane's documented defaults (README, "Logs"): at most 10,000 records or 16 MiB
# wait (the oldest dropped beyond that, LOG-22), sent 500 per request at most (a batch
# is capped at 1 MiB before gzip: well under the 2 MB request limit, LOG-27).
LOGS_DEFAULTS = {
    "flush_at": 100,
    "max_queue_size": 10_000,
    "max_queue_bytes": 16 * 1024 * 1024,
    "max_batch_size": 500,
}

# LOG-06: the contract's six levels; Python's logging levels map onto them (§2.1 note).
_SEVERITIES: dict[str, tuple[int, str]] = {
    "trace": (1, "TRACE"),
    "debug": (5, "DEBUG"),
    "info": (9, "INFO"),
    "warn": (13, "WARN"),
    "warning": (13, "WARN"),
    "error": (17, "ERROR"),
    "fatal": (21, "FATAL"),
    "critical": (21, "FATAL"),
}
_STDLIB_LEVELS = {10: "debug", 20: "info", 30: "warn", 40: "error", 50: "fatal"}
_INFO = _SEVERITIES["info"]
_MS = 1_000_000


def severity(level: object) -> tuple[int, str]:
    """(severityNumber, severityText) for ``level``: a name (any case) or a stdlib
    ``logging`` level number; anything else is INFO (LOG-07)."""
    if isinstance(level, str):
        return _SEVERITIES.get(level.strip().lower(), _INFO)
    if type(level) is int:
        return _SEVERITIES[_STDLIB_LEVELS[level]] if level in _STDLIB_LEVELS else _INFO
    return _INFO


class LogCapture:
    """The caller side of the logs lane: gates, builds the plain record, submits it."""

    def __init__(
        self,
        exporter: BatchExporter,
        stats: StatsRecorder,
        *,
        disabled: bool,
        opted_out: Callable[[], bool],
    ) -> None:
        self.exporter = exporter
        self.stats = stats
        self._disabled = disabled
        self._opted_out = opted_out  # a callable: the pipeline's opt-out state, read live
        self._clock_lock = fork_safe_lock()
        self._last_ns = 0

    def _now_ns(self) -> int:
        """Unix milliseconds times 1e6, strictly increasing within a millisecond (LOG-12): a
        second record in the same millisecond gets the previous value + 1 ns. A clock that
        went back starts again from the new time."""
        now = time.time_ns() // _MS * _MS
        with self._clock_lock:
            last = self._last_ns
            if now <= last < now + _MS:
                now = last + 1
            self._last_ns = now
        return now

    def capture(
        self,
        body: object,
        level: object = None,
        attributes: Mapping[str, Any] | None = None,
        trace_id: object = None,
        span_id: object = None,
        trace_flags: object = None,
    ) -> bool:
        """Queue one log record; ``False`` if it was dropped (counted). Never raises."""
        stats = self.stats
        stats.attempts()
        if self._disabled:
            stats.drop("disabled")
            return False
        if self._opted_out():
            stats.drop("opted_out")
            return False
        if body is None or (isinstance(body, str) and not body.strip()):
            stats.drop("invalid", 1, ": a log record with an empty body")
            return False
        try:
            record, nbytes = self._record(body, level, attributes, trace_id, span_id, trace_flags)
        except Exception as exc:  # e.g. attributes that are not a mapping
            stats.drop("invalid", 1, f": {type(exc).__name__} while building a log record")
            return False
        return self.exporter.submit(record, nbytes)

    def _record(
        self,
        body: object,
        level: object,
        attributes: Mapping[str, Any] | None,
        trace_id: object,
        span_id: object,
        trace_flags: object,
    ) -> tuple[dict[str, Any], int]:
        """The plain record and its estimated size; values copied now (``_snapshot``), so
        a later mutation of the caller's objects never changes what is sent."""
        number, text = severity(level)
        merged: dict[str, Any] = {}
        identity = _current.get()
        if identity is not None:  # LOG-14: at capture time; empty values left out
            if identity.distinct_id:
                merged["posthogDistinctId"] = identity.distinct_id
            if identity.session_id:
                merged["sessionId"] = identity.session_id
        if attributes:
            merged.update(attributes)  # the caller's keys win over the automatic ones
        nbytes = EVENT_BYTES + snapshot_values(merged, merged, self.stats.correct, "log")
        if type(body) is str:
            nbytes += len(body)
        else:
            body, size = snapshot_value(body, self.stats.correct, "log")
            nbytes += size
        if trace_id is None and span_id is None:
            active = active_span_ids()  # LOG-32 (only if OpenTelemetry is imported)
            if active is not None:
                trace_id, span_id = active
        record = {
            "time_ns": self._now_ns(),
            "severity_number": number,
            "severity_text": text,
            "body": body,
            "attributes": merged,
            "trace_id": valid_hex_id(trace_id, 32),
            "span_id": valid_hex_id(span_id, 16),
            "flags": valid_flags(trace_flags),
        }
        return record, nbytes


def build_log_capture(
    config: ClientConfig,
    *,
    user_agent: str,
    opted_out: Callable[[], bool],
    clock: Clock | None,
    on_thread_start: Callable[[], None] | None,
) -> LogCapture:
    """The logs lane of a client: its own transport (connection pool), queue, flush
    thread (``posthog_otel-logs``, started on the first record) and counters. Retries,
    timeouts, flush interval and ``sync_mode`` follow the client's delivery settings;
    ``on_error`` is the analytics events' (log drops are counted in ``stats.logs``)."""
    stats = StatsRecorder()
    delivery = config.delivery
    settings = ExporterConfig(
        flush_interval=delivery.flush_interval,
        max_batch_bytes=MAX_OTLP_BATCH_BYTES,
        timeout=delivery.timeout,
        max_retries=delivery.max_retries,
        max_retry_cycles=delivery.max_retry_cycles,
        sync_mode=delivery.sync_mode,
        drop_oldest=True,
        **LOGS_DEFAULTS,
    )
    lane = LogsLane(
        config.api_key,
        gzip=config.gzip,
        resource=_resource(),
        scope_name=LIB_NAME,
        scope_version=__version__,
    )
    transport = HttpTransport(
        config.transport_host, user_agent=user_agent, http_client=config.http_client
    )
    exporter = BatchExporter(
        lane,
        transport,
        settings,
        stats=stats,
        clock=clock,
        thread_name="posthog_otel-logs",
        on_thread_start=on_thread_start,
    )
    return LogCapture(exporter, stats, disabled=config.disabled, opted_out=opted_out)


def _resource() -> dict[str, Any]:
    """LOG-15: ``service.name`` from ``OTEL_SERVICE_NAME`` (OpenTelemetry's default
    otherwise), the SDK's ``telemetry.sdk.*`` and the OS."""
    return resource_attributes(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or "unknown_service:python",
            "telemetry.sdk.name": LIB_NAME,
            "telemetry.sdk.version": __version__,
            "telemetry.sdk.language": "python",
            "os.name": platform.system().lower() or None,
            "os.version": platform.release() or None,
        },
        None,
    )
