"""What the logs and traces lanes of a client share: their exporter (a ``BatchExporter``
of their own, with its own transport, queue, flush thread and counters, following the
client's delivery settings) and their OTLP resource. ``_logs`` and ``_traces`` differ
only where the contracts say so (which end of a full queue is dropped, the flush
threshold, the default service name)."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._assembly import LIB_NAME
from ._stats import StatsRecorder
from ._version import __version__
from .export import (
    MAX_OTLP_BATCH_BYTES,
    BatchExporter,
    Clock,
    ExporterConfig,
    HttpTransport,
    Lane,
    resource_attributes,
)

if TYPE_CHECKING:
    from ._logs_config import LogsConfig
    from ._options import ClientConfig
    from ._traces_config import TracesConfig

__all__ = ["otlp_exporter", "otlp_resource"]


def otlp_exporter(
    config: ClientConfig,
    lane: Lane,
    options: LogsConfig | TracesConfig,
    *,
    flush_at: int,
    drop_oldest: bool,
    stats: StatsRecorder,
    user_agent: str,
    clock: Clock | None,
    thread_name: str,
    on_thread_start: Callable[[], None] | None,
) -> BatchExporter:
    """The exporter of an OTLP lane: queue and batch sizes from ``options``, the flush
    interval too when it sets one; timeouts, retries and ``sync_mode`` the client's."""
    delivery = config.delivery
    interval = options.flush_interval
    settings = ExporterConfig(
        flush_at=flush_at,
        flush_interval=delivery.flush_interval if interval is None else interval,
        max_queue_size=options.max_queue_size,
        max_queue_bytes=options.max_queue_bytes,
        max_batch_size=options.max_batch_size,
        max_batch_bytes=MAX_OTLP_BATCH_BYTES,
        timeout=delivery.timeout,
        max_retries=delivery.max_retries,
        max_retry_cycles=delivery.max_retry_cycles,
        sync_mode=delivery.sync_mode,
        drop_oldest=drop_oldest,
    )
    transport = HttpTransport(
        config.transport_host, user_agent=user_agent, http_client=config.http_client
    )
    return BatchExporter(
        lane,
        transport,
        settings,
        stats=stats,
        clock=clock,
        thread_name=thread_name,
        on_thread_start=on_thread_start,
    )


def otlp_resource(
    options: LogsConfig | TracesConfig,
    default_service: str,
    service_name: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """LOG-15/TRC-15: ``service.name`` (the options', else ``service_name``, else
    ``OTEL_SERVICE_NAME``, else ``default_service``), version and environment, the
    SDK's ``telemetry.sdk.*`` and the OS, over ``extra`` and the options' resource
    attributes (the SDK-owned keys win)."""
    return resource_attributes(
        {
            "service.name": options.service_name
            or service_name
            or os.environ.get("OTEL_SERVICE_NAME")
            or default_service,
            "service.version": options.service_version,
            "deployment.environment": options.environment,
            "telemetry.sdk.name": LIB_NAME,
            "telemetry.sdk.version": __version__,
            "telemetry.sdk.language": "python",
            "os.name": platform.system().lower() or None,
            "os.version": platform.release() or None,
        },
        {**(extra or {}), **options.resource_attributes},
    )
