"""``LogsConfig``: the options of the logs lane (LOG-19), given as
``Client(logs=LogsConfig(...))`` and validated by ``_options`` when the client is built.

Defaults are deliberate (README, "Logs"): a server logs far more than a browser, so the
rate cap (LOG-28) is 10,000 records per 10 s window (1,000/s sustained, bursts allowed):
it stops a log loop from flooding the project, not a busy service. The queue holds
10,000 records and 16 MiB (the oldest dropped beyond that, LOG-22), a request carries at
most 500 records and 1 MiB before gzip (well under the 2 MB request limit, LOG-27).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import _config

__all__ = ["LogRecordHook", "LogsConfig", "checked_logs_config"]

LogRecordHook = Callable[[dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class LogsConfig:
    """Options of PostHog Logs (``client.capture_log`` and the integrations' ``logs=True``).

    ``service_name`` (default ``OTEL_SERVICE_NAME``, else ``unknown_service:python``),
    ``service_version`` and ``environment`` (``deployment.environment``) go in the OTLP
    resource with ``resource_attributes``; on a clash the SDK's ``service.*`` and
    ``telemetry.sdk.*`` keys win (LOG-15). ``flush_interval`` ``None`` follows the
    client's. ``max_logs`` records per ``rate_window`` seconds at most (LOG-28; zero or
    less on either turns the cap off). ``before_send``: a hook or a list of hooks run in
    order on each record dict; ``None`` or a blank ``body`` drops it, a hook that raises
    is skipped (fail-open, LOG-29).
    """

    service_name: str | None = None
    service_version: str | None = None
    environment: str | None = None
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    flush_at: int = 100
    flush_interval: float | None = None
    max_queue_size: int = 10_000
    max_queue_bytes: int = 16 * 1024 * 1024
    max_batch_size: int = 500
    max_logs: int = 10_000
    rate_window: float = 10.0
    before_send: LogRecordHook | Sequence[LogRecordHook] | None = None


def checked_logs_config(logs: object) -> LogsConfig:
    """``logs`` validated (``None``: the defaults); a bad value raises ``ValueError``
    naming the option, as every ``Client`` argument does."""
    if logs is None:
        logs = LogsConfig()
    if not isinstance(logs, LogsConfig):
        raise ValueError(f"logs must be a LogsConfig, got {type(logs).__name__}")
    resource_attributes = _config.check_resource("logs", logs)
    check_int, check_float = _config.check_int, _config.check_float
    for name in ("flush_at", "max_queue_size", "max_queue_bytes", "max_batch_size"):
        check_int(f"logs.{name}", getattr(logs, name), 1)
    interval = logs.flush_interval
    if interval is not None:
        interval = check_float("logs.flush_interval", interval, positive=True)
    if type(logs.max_logs) is not int:
        raise ValueError(f"logs.max_logs must be an integer, got {logs.max_logs!r}")
    window = logs.rate_window
    if not isinstance(window, int | float) or isinstance(window, bool) or math.isnan(window):
        raise ValueError(f"logs.rate_window must be a number of seconds, got {window!r}")
    return replace(
        logs,
        resource_attributes=resource_attributes,
        flush_interval=interval,
        before_send=_config.check_hooks("logs.before_send", logs.before_send),
    )
