"""``client.capture_log``: a log record for PostHog Logs, on its own lane.

The record is plain data taken at capture time (LOG-10/14/21): the timestamp, severity,
body, the caller's attributes merged over the identity context's ``posthogDistinctId``,
``sessionId`` and ``url.full`` (its ``$current_url``: the request's, LOG-14's web key),
and the trace ids (given, or the active OpenTelemetry span's: LOG-32).
It is encoded as OTLP only when its batch is sent (``export``'s logs lane), on the logs
exporter's own thread and queue: a slow logs endpoint never delays analytics events.

Gates, in the contract's order (LOG-04): disabled, opted out, blank body, the lane's own
``before_send`` (fail-open, LOG-29), the tumbling-window rate cap (LOG-28). Each drop is
counted in ``client.stats.logs.dropped``. ``capture_log`` works whenever the client does
(LOG-05): there is no remote or per-call switch. Options: ``LogsConfig`` (LOG-19).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._assembly import LIB_NAME
from ._before_send import HookGuard
from ._context import _current, active_span_ids
from ._fork import fork_safe_lock
from ._logs_config import LogRecordHook
from ._otlp_lane import otlp_exporter, otlp_resource
from ._snapshot import EVENT_BYTES, as_text, snapshot_value, snapshot_values
from ._stats import StatsRecorder
from ._version import __version__
from .export import (
    BatchExporter,
    Clock,
    LogsLane,
    valid_flags,
    valid_hex_id,
)

if TYPE_CHECKING:
    from ._options import ClientConfig

__all__ = [
    "LogCapture",
    "Logger",
    "RateCap",
    "build_log_capture",
    "exception_attributes",
    "severity",
]

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


def exception_attributes(exception: object) -> dict[str, str]:
    """OpenTelemetry's ``exception.type``/``exception.message``/``exception.stacktrace``
    for a log record's exception: an exception, an ``exc_info`` tuple, or the traceback
    text a ``QueueHandler`` or structlog's renderer left (type and message read from its
    last line). Empty for anything else. Formatted on the caller's thread: the record
    keeps no traceback or frame."""
    if isinstance(exception, tuple) and len(exception) == 3:
        exception = exception[1]
    if isinstance(exception, BaseException):
        kind = type(exception)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        try:
            message = str(exception)
        except Exception:  # an exception whose __str__ raises
            message = f"<unprintable {kind.__name__}>"
        return {
            "exception.type": name,
            "exception.message": message,
            "exception.stacktrace": "".join(traceback.format_exception(exception)).rstrip(),
        }
    if isinstance(exception, str) and exception.strip():
        text = exception.rstrip()
        last = text.rsplit("\n", 1)[-1].strip()
        kind_name, _, text_message = last.partition(": ")
        return {
            "exception.type": kind_name,
            "exception.message": text_message,
            "exception.stacktrace": text,
        }
    return {}


class RateCap:
    """The tumbling-window cap of LOG-28: at most ``max_logs`` records accepted per
    ``window`` seconds of wall-clock time; later ones are refused (never buffered) until
    the window rolls over. A clock that went back starts a new window; ``max_logs`` or
    ``window`` of zero or less turns the cap off."""

    def __init__(self, max_logs: int, window: float, now: Callable[[], float] = time.time) -> None:
        self.enabled = max_logs > 0 and window > 0
        self._max = max_logs
        self._window = window
        self._now = now
        self._lock = fork_safe_lock()
        self._start = -float("inf")
        self._count = 0
        self._refused = 0

    def admit(self) -> int:
        """0 when the record is accepted; else how many this window refused so far (1
        for the first: the one to warn about, LOG-28's one warning per window)."""
        now = self._now()
        with self._lock:
            if now >= self._start + self._window or now < self._start:
                self._start, self._count, self._refused = now, 0, 0
            if self._count < self._max:
                self._count += 1
                return 0
            self._refused += 1
            return self._refused


class LogCapture:
    """The caller side of the logs lane: gates, builds the plain record, submits it."""

    def __init__(
        self,
        exporter: BatchExporter,
        stats: StatsRecorder,
        *,
        disabled: bool,
        opted_out: Callable[[], bool],
        before_send: tuple[LogRecordHook, ...] = (),
        rate_cap: RateCap | None = None,
        active_ids: Callable[[], tuple[str, str] | None] = active_span_ids,
    ) -> None:
        self.exporter = exporter
        self.stats = stats
        self._disabled = disabled
        self._opted_out = opted_out  # a callable: the pipeline's opt-out state, read live
        self._before_send = before_send
        # Set while ``before_send`` runs on a thread: a record the hook logs (through
        # ``capture_log`` or a handler) is sent as it is, rather than recursing.
        self._in_hook = HookGuard()
        self._rate_cap = rate_cap if rate_cap is not None and rate_cap.enabled else None
        self._clock_lock = fork_safe_lock()
        self._last_ns = 0
        # LOG-32: the innermost active span's ids (the native tracer's ``active_ids``
        # covers native and OpenTelemetry spans; by default only OpenTelemetry's).
        self._active_ids = active_ids

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
        *,
        time_ns: object = None,
        severity_number: object = None,
    ) -> bool:
        """Queue one log record; ``False`` if it was dropped (counted). Never raises.
        ``time_ns`` and ``severity_number`` are a record's own values when it was made
        elsewhere (an OpenTelemetry ``LogRecord``): they win over the capture time and
        the severity derived from ``level``."""
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
            if time_ns is not None or severity_number is not None:
                _own_values(record, level, time_ns, severity_number)
        except Exception as exc:  # e.g. attributes that are not a mapping
            stats.drop("invalid", 1, f": {type(exc).__name__} while building a log record")
            return False
        if self._before_send:  # a record the hook itself logs is not hooked again
            kept = self._in_hook.call(self._run_before_send, record, _unchanged)
            if kept is None:
                stats.drop("before_send")
                return False
            record = kept
        if self._rate_cap is not None:
            refused = self._rate_cap.admit()
            if refused == 1:
                stats.drop("rate_limited", 1, ": the logs rate cap for this window is used up")
            if refused:
                if refused > 1:  # counted, not warned again: one warning per window
                    with stats.lock:
                        stats.dropped["rate_limited"] += 1
                return False
        return self.exporter.submit(record, nbytes)

    def _run_before_send(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The lane's ``before_send`` chain, left to right, each hook on a copy of the
        previous value; ``None`` to drop (a hook returned ``None`` or left a blank
        body). Fail-open (LOG-29): a hook that raises or returns something other than a
        dict is skipped, the chain going on with the previous value (counted in
        ``stats.logs.corrected["logs_before_send_error"]`` and warned)."""
        for hook in self._before_send:
            candidate = dict(record, attributes=dict(record["attributes"]))
            try:
                result = hook(candidate)
            except Exception as exc:
                self._hook_failed(hook, f"raised {type(exc).__name__}: {exc}")
                continue
            if result is None:
                return None
            if not isinstance(result, dict):
                self._hook_failed(hook, f"returned a {type(result).__name__}, not a dict")
                continue
            record = result
            body = record.get("body")
            if body is None or (isinstance(body, str) and not body.strip()):
                return None
        if not isinstance(record.get("attributes"), dict):
            record["attributes"] = {}
        return record

    def _hook_failed(self, hook: object, what: str) -> None:
        name = getattr(hook, "__qualname__", None) or repr(hook)
        self.stats.correct(
            "logs_before_send_error",
            f"logs before_send hook {name} {what}; the record is kept as it was (fail-open)",
        )

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
            url = identity.properties.get("$current_url")
            if url and isinstance(url, str):  # the request's URL, as the middleware set it
                merged["url.full"] = url
        if attributes:
            merged.update(attributes)  # the caller's keys win over the automatic ones
        nbytes = EVENT_BYTES + snapshot_values(
            merged, merged, self.stats.correct, "log", unknown=as_text
        )
        if type(body) is str:
            nbytes += len(body)
        else:
            body, size = snapshot_value(body, self.stats.correct, "log", unknown=as_text)
            nbytes += size
        if trace_id is None and span_id is None:
            active = self._active_ids()  # LOG-32
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


def _own_values(
    record: dict[str, Any], level: object, time_ns: object, severity_number: object
) -> None:
    """A record's own timestamp (positive int nanoseconds) and severity number (1-24,
    OTel's range) over the captured ones; the text is ``level`` in upper case (LOG-08)
    when it is a non-blank string (``WARNING`` as OTel gives it), else the contract's
    name for the number."""
    if type(time_ns) is int and time_ns > 0:
        record["time_ns"] = time_ns
    if type(severity_number) is int and 1 <= severity_number <= 24:
        record["severity_number"] = severity_number
        if isinstance(level, str) and level.strip():
            record["severity_text"] = level.strip().upper()  # LOG-08: upper case
        else:
            record["severity_text"] = _SEVERITY_NAMES[(severity_number - 1) // 4]


_SEVERITY_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def _unchanged(record: dict[str, Any]) -> dict[str, Any] | None:
    return record


class Logger:
    """``client.logger``: ``trace``/``debug``/``info``/``warn``/``error``/``fatal(body,
    attributes=None)``, each exactly ``client.capture_log(body, level, attributes)``
    (LOG-01): the one capture path, its gates and counters. Never raises; each returns
    ``False`` for a dropped record."""

    __slots__ = ("_capture",)

    def __init__(self, capture: LogCapture) -> None:
        self._capture = capture

    def trace(self, body: str, attributes: Mapping[str, Any] | None = None) -> bool:
        return self._capture.capture(body, "trace", attributes)

    def debug(self, body: str, attributes: Mapping[str, Any] | None = None) -> bool:
        return self._capture.capture(body, "debug", attributes)

    def info(self, body: str, attributes: Mapping[str, Any] | None = None) -> bool:
        return self._capture.capture(body, "info", attributes)

    def warn(self, body: str, attributes: Mapping[str, Any] | None = None) -> bool:
        return self._capture.capture(body, "warn", attributes)

    warning = warn  # the name ``logging`` users reach for

    def error(self, body: str, attributes: Mapping[str, Any] | None = None) -> bool:
        return self._capture.capture(body, "error", attributes)

    def fatal(self, body: str, attributes: Mapping[str, Any] | None = None) -> bool:
        return self._capture.capture(body, "fatal", attributes)


def build_log_capture(
    config: ClientConfig,
    *,
    user_agent: str,
    opted_out: Callable[[], bool],
    clock: Clock | None,
    on_thread_start: Callable[[], None] | None,
    active_ids: Callable[[], tuple[str, str] | None] = active_span_ids,
) -> LogCapture:
    """The logs lane of a client: its own transport (connection pool), queue, flush
    thread (``posthog_otel-logs``, started on the first record) and counters. Retries,
    timeouts, flush interval and ``sync_mode`` follow the client's delivery settings;
    ``on_error`` is the analytics events' (log drops are counted in ``stats.logs``).
    Queue and batch sizes, the flush interval (when given), the resource, ``before_send``
    and the rate cap come from ``config.logs`` (``LogsConfig``). ``active_ids`` gives the
    active span's ids a record carries (LOG-32): the native tracer's ``active_ids``."""
    stats = StatsRecorder()
    logs = config.logs
    lane = LogsLane(
        config.api_key,
        gzip=config.gzip,
        resource=otlp_resource(logs, "unknown_service:python"),
        scope_name=LIB_NAME,
        scope_version=__version__,
    )
    exporter = otlp_exporter(
        config,
        lane,
        logs,
        flush_at=logs.flush_at,
        drop_oldest=True,  # LOG-22: the oldest record makes room
        stats=stats,
        user_agent=user_agent,
        clock=clock,
        thread_name="posthog_otel-logs",
        on_thread_start=on_thread_start,
    )
    return LogCapture(
        exporter,
        stats,
        disabled=config.disabled,
        opted_out=opted_out,
        before_send=tuple(logs.before_send or ()),  # type: ignore[arg-type]
        rate_cap=RateCap(logs.max_logs, logs.rate_window),
        active_ids=active_ids,
    )
