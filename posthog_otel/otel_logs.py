"""OpenTelemetry logs SDK: every log record to PostHog Logs.

Attach to the application's logger provider::

    provider.add_log_record_processor(BatchLogRecordProcessor(PostHogLogExporter(client)))

Each record goes through ``client.capture_log`` (the one capture path: its gates,
``LogsConfig`` ``before_send`` and rate cap, counters in ``client.stats.logs``), with the
record's own body, timestamp, severity, attributes and trace/span ids and flags: those
win over the capture time and the identity context (which still adds
``posthogDistinctId``/``sessionId`` when the record's attributes do not carry them).
The resource sent is the client's logs resource (``LogsConfig``); a client the exporter
builds itself takes ``service.name`` and the other attributes of OpenTelemetry's own
resource from the environment (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).

Zero-code: the entry point ``opentelemetry_logs_exporter = posthog`` lets
``OTEL_LOGS_EXPORTER=posthog OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true
opentelemetry-instrument python app.py`` ship the stdlib ``logging`` records to PostHog
Logs with a client configured from ``POSTHOG_API_KEY``/``POSTHOG_HOST``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from ._fork import fork_safe_lock
from ._log import logger
from ._logs_config import LogsConfig

if TYPE_CHECKING:
    from .client import Client

__all__ = ["PostHogLogExporter"]


class PostHogLogExporter(LogRecordExporter):
    """Queues each exported OpenTelemetry log record on the client's logs lane.

    ``export`` returns at once: the lane's own thread encodes and sends (a slow logs
    endpoint delays neither the application nor analytics events). With ``client=None``
    the exporter builds and owns a client configured from the environment; its
    ``shutdown()`` closes that client and only flushes a client you passed in.
    """

    def __init__(self, client: Client | None = None) -> None:
        if client is None:
            from .client import Client

            # No exit hook of its own: the provider's shutdown (at exit) closes it
            # after the processor exported its last batch.
            client = Client(logs=_environment_logs_config(), _exit_hook=False)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self._shutdown = False
        self._lock = fork_safe_lock()
        self.errors = 0
        """Records that could not be converted because of an internal error."""

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        if self._shutdown:
            return LogRecordExportResult.FAILURE
        for item in batch:
            try:
                self._export_record(item.log_record)
            except Exception:
                with self._lock:
                    self.errors += 1
                logger.debug("could not convert a log record", exc_info=True)
        return LogRecordExportResult.SUCCESS

    def _export_record(self, record: Any) -> None:
        number = record.severity_number
        attributes: Mapping[str, Any] | None = record.attributes
        event_name = getattr(record, "event_name", None)
        if event_name:
            attributes = {**(attributes or {}), "event.name": event_name}
        self.client.capture_log(
            record.body,
            record.severity_text,
            attributes,
            record.trace_id or None,
            record.span_id or None,
            int(record.trace_flags) if record.trace_flags is not None else None,
            time_ns=record.timestamp or record.observed_timestamp,
            severity_number=number.value if number is not None else None,
        )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what the client has queued."""
        return self.client.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Flush; close the client only if this exporter created it."""
        if self._shutdown:
            return
        self._shutdown = True
        if self._owns_client:
            self.client.close(self.client.shutdown_timeout)
        else:
            self.client.flush(self.client.shutdown_timeout)


def _environment_logs_config() -> LogsConfig:
    """OpenTelemetry's own resource from the environment (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``) as the logs resource of an owned client: the same
    ``service.name`` the application's other signals carry."""
    attributes = dict(Resource.create().attributes)
    service = attributes.pop("service.name", None)
    return LogsConfig(
        service_name=service if isinstance(service, str) else None,
        resource_attributes={
            key: value for key, value in attributes.items() if not key.startswith("telemetry.")
        },
    )
