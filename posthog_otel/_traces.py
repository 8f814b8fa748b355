"""PostHog Traces: the lane every finished span goes through (sdk-contracts §2.2).

``TraceCapture`` is the seam the span producers share: the native span API
(``_spans``) and the OpenTelemetry exporters (``otel.PostHogSpanExporter(traces=True)``,
``otel_traces.PostHogTraceExporter``) hand it a *plain* finished span (the shape
``export._otlp.encode_span`` reads) and it runs, when the span ends (TRC-26):

1. the gates, in the contract's order: client disabled, opted out, ``before_send``
   returned ``None``. The hook is fail-*closed* (TRC-27): one that raises, or returns
   something other than a dict, drops the span, so no unscrubbed data leaves; the ids
   are read-only (a change is undone, with a debug message);
2. the limits, on whatever the hook returned (TRC-12): ``max_attributes`` and
   ``max_events``, the earliest entries winning, the excess counted in the span's
   ``dropped_attributes_count``/``dropped_events_count``; the automatic keys
   ``posthogDistinctId``/``sessionId`` are exempt;
3. the lane's bounded queue, which refuses the *incoming* span when full (TRC-19).

Encoding (and the validity rules of TRC-11) happen when the batch is sent, on the
lane's own thread (``posthog_otel-traces``, started by the first span) with its own
connection pool: a slow traces endpoint never delays analytics events or logs.

Every drop, here or in the lane, is counted in ``client.stats.traces.dropped`` by
reason, and warned about at most once per flush interval with the count and the mix
of reasons (TRC-21). ``drop(reason)`` lets the native API count its live-span
refusals and age evictions there too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from ._assembly import LIB_NAME
from ._before_send import HookGuard
from ._fork import fork_safe_lock
from ._log import debug_state, logger
from ._otlp_lane import otlp_exporter, otlp_resource
from ._snapshot import ENTRY_BYTES, EVENT_BYTES, as_text, snapshot_values
from ._stats import INTENTIONAL_DROPS, StatsRecorder
from ._traces_config import SpanHook, TracesConfig, checked_traces_config
from ._version import __version__
from .export import (
    BatchExporter,
    Clock,
    TracesLane,
    valid_hex_id,
)

if TYPE_CHECKING:
    from ._options import ClientConfig

__all__ = ["AUTOMATIC_KEYS", "SpanDropStats", "TraceCapture", "build_trace_capture"]

AUTOMATIC_KEYS = frozenset(("posthogDistinctId", "sessionId"))
"""The automatic context keys (TRC-14): exempt from ``max_attributes``."""
_IDS = ("trace_id", "span_id", "parent_span_id")
_ID_LENGTHS = {"trace_id": 32, "span_id": 16, "parent_span_id": 16}
_DEFAULT_SERVICE = "unknown_service"  # TRC-15: service.name is always sent


class SpanDropStats(StatsRecorder):
    """The traces lane's counters. Every drop, whatever its reason, feeds one warning
    at most once per ``interval`` (the lane's flush interval) that gives the number of
    spans dropped since the previous one and the mix of reasons (TRC-21); drops the
    application asked for alone (``opted_out``, ``before_send``...) log at DEBUG."""

    def __init__(self, interval: float, now: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._now = now
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self._mix_lock = fork_safe_lock()
        self._mix: dict[str, int] = {}
        self._last_warning = -float("inf")

    def warn_drop(self, reason: str, count: int, detail: str = "") -> None:
        now = self._now()
        with self._mix_lock:
            self._mix[reason] = self._mix.get(reason, 0) + count
            if now - self._last_warning < self._interval:
                mix = None
            else:
                self._last_warning = now
                mix, self._mix = self._mix, {}
        if mix is None:
            if debug_state.verbose:
                logger.debug("dropped %d span(s): %s%s", count, reason, detail)
            return
        level = logging.DEBUG if INTENTIONAL_DROPS.issuperset(mix) else logging.WARNING
        logger.log(
            level,
            "dropped %d span(s) since the last warning (%s); last: %s%s",
            sum(mix.values()),
            ", ".join(f"{name} {n}" for name, n in sorted(mix.items())),
            reason,
            detail,
        )


class TraceCapture:
    """The caller side of the traces lane (``client.traces``): gates, hook, limits,
    queue. Thread-safe; never raises.

    ``enabled`` is whether the native span API is switched on (``Client(traces=...)``
    given, client not disabled: TRC-04/28); the lane itself serves the OpenTelemetry
    exporters whatever it says. ``config`` holds the options (the defaults when
    ``traces`` was not given).
    """

    def __init__(
        self,
        exporter: BatchExporter,
        stats: StatsRecorder,
        config: TracesConfig,
        *,
        enabled: bool,
        disabled: bool,
        opted_out: Callable[[], bool],
        lane: TracesLane | None = None,
        resource: Callable[[str | None, Mapping[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.exporter = exporter
        self.stats = stats
        self.config = config
        self.enabled = enabled and not disabled
        self._disabled = disabled
        self._opted_out = opted_out  # the pipeline's opt-out state, read live
        self._hooks: tuple[SpanHook, ...] = tuple(config.before_send or ())  # type: ignore[arg-type]
        # Set while ``before_send`` runs on a thread: a span the hook ends is queued as
        # it is (its own work), rather than recursing through the hook.
        self._in_hook = HookGuard()
        self._max_attributes = config.max_attributes
        self._max_events = config.max_events
        self._lane = lane
        self._resource = resource
        self._resource_lock = fork_safe_lock()
        self._adopted = config.service_name is not None  # a configured name is final

    @property
    def opted_out(self) -> bool:
        """Whether ``opt_out()`` is in force (the native API hands out no-ops then)."""
        return self._opted_out()

    def submit(self, span: Mapping[str, Any]) -> bool:
        """Queue one finished span (plain data: see ``export._otlp.encode_span``);
        ``False`` if it was dropped (counted in ``stats.traces``). Never raises, never
        blocks on the network. The mapping is not changed."""
        stats = self.stats
        stats.attempts()
        if self._disabled:
            stats.drop("disabled")
            return False
        if self._opted_out():
            stats.drop("opted_out")
            return False
        try:
            record = _plain(span)
        except Exception as exc:  # ids that are not W3C ids, a span that is not a mapping
            stats.drop("invalid", 1, f": {exc}")
            return False
        if self._hooks:  # a span the hook itself ends is not hooked again
            kept = self._in_hook.call(self._run_hooks, record, _unchanged)
            if kept is None:
                return False  # counted by _run_hooks
            record = kept
        try:
            nbytes = self._limit(record)
        except Exception as exc:  # e.g. attributes whose items() raise
            stats.drop("invalid", 1, f": {type(exc).__name__} while limiting a span")
            return False
        return self.exporter.submit(record, nbytes)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what this lane holds (``client.flush`` drains every lane); ``True``
        if all of it was delivered within ``timeout``."""
        return self.exporter.flush(timeout)

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` spans dropped before they ended (the native API's
        ``live_limit`` refusals and ``span_age`` evictions, TRC-20) in the same counter
        and warning as every other drop (TRC-21)."""
        if count <= 0:
            return
        for _ in range(count):
            self.stats.attempts()
        self.stats.drop(reason, count)

    def use_resource(self, attributes: Mapping[str, Any]) -> None:
        """Adopt an OpenTelemetry span's resource as the lane's (its ``service.name``
        and other attributes; ``TracesConfig``'s own values win), once, and only when
        ``TracesConfig`` names no service: the spans then carry the service name the
        application gave OpenTelemetry."""
        if self._adopted or self._lane is None or self._resource is None:
            return
        with self._resource_lock:
            if self._adopted:
                return
            self._adopted = True
        name = attributes.get("service.name")
        extra = {
            key: value
            for key, value in attributes.items()
            if key != "service.name" and not str(key).startswith("telemetry.")
        }
        self._lane.set_resource(self._resource(name if isinstance(name, str) else None, extra))

    # ------------------------------------------------------------------ end-time steps

    def _run_hooks(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """``before_send``, left to right, each on a copy of the previous value; ``None``
        when the span is dropped (counted): a hook returned ``None``
        (``before_send``), or raised or returned something else (``before_send_error``:
        fail-closed, TRC-27)."""
        for hook in self._hooks:
            candidate = dict(record, attributes=dict(record["attributes"]))
            candidate["events"] = list(record["events"])
            try:
                result = hook(candidate)
            except Exception as exc:
                self._hook_failed(hook, f"raised {type(exc).__name__}: {exc}")
                return None
            if result is None:
                self.stats.drop("before_send")
                return None
            if not isinstance(result, dict):
                self._hook_failed(hook, f"returned a {type(result).__name__}, not a dict")
                return None
            for key in _IDS:  # read-only (TRC-27): a change is undone
                if result.get(key) != record.get(key):
                    logger.debug("before_send of a span cannot change %s: ignored", key)
                    result[key] = record.get(key)
            record = result
        return record

    def _hook_failed(self, hook: object, what: str) -> None:
        name = getattr(hook, "__qualname__", None) or repr(hook)
        self.stats.drop(
            "before_send_error", 1, f": traces before_send hook {name} {what} (span dropped)"
        )

    def _limit(self, record: dict[str, Any]) -> int:
        """TRC-12 on ``record`` (in place): at most ``max_attributes`` of the caller's
        attributes (the automatic keys exempt, ``None`` values left out) and
        ``max_events`` events, the earliest winning, the excess added to the dropped
        counts. Values that could change later are copied; the estimated size."""
        attributes = record.get("attributes")
        attributes = dict(attributes) if isinstance(attributes, Mapping) else {}
        kept: dict[str, Any] = {}
        room, dropped = self._max_attributes, 0
        for key, value in attributes.items():
            if value is None:
                continue
            if key in AUTOMATIC_KEYS:
                kept[key] = value
            elif room > 0:
                kept[key] = value
                room -= 1
            else:
                dropped += 1
        events = record.get("events")
        events = [e for e in events if isinstance(e, Mapping)] if _is_list(events) else []
        dropped_events = len(events) - self._max_events
        if dropped_events > 0:
            events = events[: self._max_events]
        nbytes = EVENT_BYTES + snapshot_values(
            kept, kept, self.stats.correct, "span", unknown=as_text
        )
        record["attributes"] = kept
        record["events"] = events
        for event in events:
            nbytes += ENTRY_BYTES * (2 + len(event.get("attributes") or ()))
        _add(record, "dropped_attributes_count", dropped)
        _add(record, "dropped_events_count", max(dropped_events, 0))
        return nbytes


def _plain(span: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``span`` with valid lowercase hex ids (``ValueError`` if the
    trace or span id is not one; an invalid parent id is left out), the attributes a
    dict and the events a list."""
    if not isinstance(span, Mapping):
        raise ValueError(f"a span must be a mapping, not {type(span).__name__}")
    record = dict(span)
    for key in _IDS:
        valid = valid_hex_id(record.get(key), _ID_LENGTHS[key])
        if valid is None and key != "parent_span_id":
            raise ValueError(f"a span without a valid {key}")
        record[key] = valid
    attributes = record.get("attributes")
    record["attributes"] = dict(attributes) if isinstance(attributes, Mapping) else {}
    events = record.get("events")
    record["events"] = list(events) if _is_list(events) else []
    return record


def _unchanged(record: dict[str, Any]) -> dict[str, Any] | None:
    return record


def _is_list(value: object) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    return isinstance(value, list | tuple)


def _add(record: dict[str, Any], key: str, count: int) -> None:
    if count:
        before = record.get(key)
        record[key] = (before if type(before) is int and before > 0 else 0) + count


def build_trace_capture(
    config: ClientConfig,
    *,
    user_agent: str,
    opted_out: Callable[[], bool],
    clock: Clock | None,
    on_thread_start: Callable[[], None] | None,
) -> TraceCapture:
    """The traces lane of a client: its own transport (connection pool), queue, flush
    thread (``posthog_otel-traces``, started by the first span) and counters. Timeouts,
    retries and ``sync_mode`` follow the client's delivery settings, the flush interval
    too unless ``TracesConfig`` sets one; queue and batch sizes (the batch size is also
    the depth that starts a flush), resource, hook and limits come from
    ``config.traces`` (the defaults when it is ``None``: the OpenTelemetry exporters'
    ``traces=True`` use the lane whether or not the native API is on)."""
    traces = config.traces if config.traces is not None else _defaults()
    interval = traces.flush_interval
    stats = SpanDropStats(config.delivery.flush_interval if interval is None else interval)

    def resource(service_name: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
        return otlp_resource(traces, _DEFAULT_SERVICE, service_name, extra)

    lane = TracesLane(
        config.api_key,
        gzip=config.gzip,
        resource=resource(None, {}),
        scope_name=LIB_NAME,
        scope_version=__version__,
    )
    exporter = otlp_exporter(
        config,
        lane,
        traces,
        flush_at=traces.max_batch_size,  # TRC-22/28: the batch size is the depth trigger
        drop_oldest=False,  # TRC-19: the incoming span is the one dropped
        stats=stats,
        user_agent=user_agent,
        clock=clock,
        thread_name="posthog_otel-traces",
        on_thread_start=on_thread_start,
    )
    return TraceCapture(
        exporter,
        stats,
        traces,
        enabled=config.traces is not None,
        disabled=config.disabled,
        opted_out=opted_out,
        lane=lane,
        resource=resource,
    )


def _defaults() -> TracesConfig:
    """``TracesConfig()`` as ``Client(traces=True)`` has it (validated, hooks a tuple)."""
    return checked_traces_config(True) or TracesConfig()
