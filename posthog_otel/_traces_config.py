"""``TracesConfig``: the options of PostHog Traces (TRC-28), given as
``Client(traces=TracesConfig(...))`` (or ``traces=True`` for the defaults) and validated
by ``_options`` when the client is built.

Defaults are deliberate (README, "Traces"): the queue holds 10,000 finished spans and
16 MiB (beyond that the *incoming* span is dropped, TRC-19); a request carries at most
500 spans and 1 MiB before gzip (well under the 2 MB request limit, TRC-23), and that
depth also triggers a flush; at most 10,000 native spans may be live at once and none
for longer than an hour (TRC-20); 128 attributes and 128 events per span (TRC-12).
There is deliberately no rate cap (TRC-22).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import _config

__all__ = ["SpanHook", "TracesConfig", "checked_traces_config"]

SpanHook = Callable[[dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class TracesConfig:
    """Options of PostHog Traces (the native span API and ``traces=True`` exporters).

    ``service_name`` (default ``OTEL_SERVICE_NAME``, else ``unknown_service``; always
    sent, TRC-15), ``service_version`` and ``environment`` (``deployment.environment``)
    go in the OTLP resource with ``resource_attributes``; on a clash the SDK's keys win.
    ``flush_interval`` ``None`` follows the client's. ``max_batch_size`` spans per
    request, also the queue depth that starts a flush. ``max_live_spans`` and
    ``max_span_age`` (seconds) bound the native API's open spans; ``max_attributes`` and
    ``max_events`` a span's own entries (the earliest win). ``before_send``: a hook or a
    list of hooks run in order on each finished span's plain view; ``None`` drops it,
    and a hook that raises drops it too (fail-closed, TRC-27): the place to scrub data.
    """

    service_name: str | None = None
    service_version: str | None = None
    environment: str | None = None
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    flush_interval: float | None = None
    max_queue_size: int = 10_000
    max_queue_bytes: int = 16 * 1024 * 1024
    max_batch_size: int = 500
    max_live_spans: int = 10_000
    max_span_age: float = 3600.0
    max_attributes: int = 128
    max_events: int = 128
    before_send: SpanHook | Sequence[SpanHook] | None = None


def checked_traces_config(traces: object) -> TracesConfig | None:
    """``traces`` validated: ``None``/``False`` is off (TRC-28: tracing is off until a
    config is given), ``True`` the defaults; a bad value raises ``ValueError`` naming
    the option, as every ``Client`` argument does."""
    if traces is None or traces is False:
        return None
    if traces is True:
        traces = TracesConfig()
    if not isinstance(traces, TracesConfig):
        kind = type(traces).__name__
        raise ValueError(f"traces must be True, False or a TracesConfig, got {kind}")
    resource_attributes = _config.check_resource("traces", traces)
    check_int, check_float = _config.check_int, _config.check_float
    for name in (
        "max_queue_size",
        "max_queue_bytes",
        "max_batch_size",
        "max_live_spans",
        "max_attributes",
        "max_events",
    ):
        check_int(f"traces.{name}", getattr(traces, name), 1)
    interval = traces.flush_interval
    if interval is not None:
        interval = check_float("traces.flush_interval", interval, positive=True)
    age = check_float("traces.max_span_age", traces.max_span_age, positive=True)
    return replace(
        traces,
        resource_attributes=resource_attributes,
        flush_interval=interval,
        max_span_age=age,
        before_send=_config.check_hooks("traces.before_send", traces.before_send),
    )
