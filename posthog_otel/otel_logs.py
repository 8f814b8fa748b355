"""OpenTelemetry logs SDK: every log record to PostHog Logs.

Attach to the application's logger provider::

    provider.add_log_record_processor(BatchLogRecordProcessor(PostHogLogExporter(client)))

Each record goes through ``client.capture_log`` (the one capture path: its gates,
``LogsConfig`` ``before_send`` and rate cap, counters in ``client.stats.logs``), with the
record's own body, timestamp, severity, attributes and trace/span ids and flags: those
win over the capture time and the identity context. A record without a body (allowed
by OpenTelemetry, not by ``capture_log``) is sent with its ``event_name`` as the body,
else ``NO_BODY`` (``"(no body)"``); an empty-string body is dropped like any blank one.
The identity context (``posthogDistinctId``/``sessionId``, LOG-14) is read where the
record is logged: by the exporter itself under ``SimpleLogRecordProcessor``; under
``BatchLogRecordProcessor`` (which exports on its own thread) through
``IdentityStamper``, which ``instrument_logs`` and the zero-code path put in front of
the batch processor.
The resource sent is the client's logs resource (``LogsConfig``); a client the exporter
builds itself takes ``service.name`` and the other attributes of OpenTelemetry's own
resource from the environment (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).

Zero-code: the entry point ``opentelemetry_logs_exporter = posthog`` lets
``OTEL_LOGS_EXPORTER=posthog OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true
opentelemetry-instrument python app.py`` ship the stdlib ``logging`` records to PostHog
Logs with a client configured from ``POSTHOG_API_KEY``/``POSTHOG_HOST`` (identity
stamped as with ``instrument_logs``); its exit flush (atexit, SIGTERM) exports the
record batch first, as the traces exporter's does.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

try:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
except ImportError:  # an opentelemetry-sdk from before the LogRecord* names
    from opentelemetry.sdk._logs.export import LogExporter as LogRecordExporter
    from opentelemetry.sdk._logs.export import (  # type: ignore[assignment]
        LogExportResult as LogRecordExportResult,
    )
from opentelemetry.sdk.resources import Resource

from ._context import _current
from ._fork import fork_safe_lock
from ._integration import flush_provider_at_exit, release_client
from ._log import logger
from ._logs_config import LogsConfig

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "NO_BODY",
    "IdentityStamper",
    "PostHogLogExporter",
    "PostHogLogProcessor",
    "instrument_logs",
]

# The body of an OpenTelemetry record that has none (and no event name): OpenTelemetry
# makes the body optional (a record may be attributes only), PostHog Logs' capture path
# drops a blank body (LOG-04) as the application's mistake. Such a record is sent, with
# this placeholder, rather than dropped as invalid.
NO_BODY = "(no body)"


class PostHogLogExporter(LogRecordExporter):
    """Queues each exported OpenTelemetry log record on the client's logs lane.

    ``export`` returns at once: the lane's own thread encodes and sends (a slow logs
    endpoint delays neither the application nor analytics events). With ``client=None``
    the exporter builds and owns a client configured from the environment; its
    ``shutdown()`` closes that client and only flushes a client you passed in.
    """

    def __init__(self, client: Client | None = None) -> None:
        self._shutdown = False
        self._provider: weakref.ref[LoggerProvider] | None = None
        zero_code = False
        if client is None:
            from .client import Client

            zero_code = _named_by_otel_environment()
            # Outside zero-code, no exit hook of its own: the provider's shutdown (at
            # exit) closes it after the processor exported its last batch.
            client = Client(logs=_environment_logs_config(), _exit_hook=zero_code)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        if zero_code:
            self._join_zero_code()
        self._lock = fork_safe_lock()
        self.errors = 0
        """Records that could not be converted because of an internal error."""

    def _join_zero_code(self) -> None:
        """On the entry-point path: stamp identity on the global provider's records, and
        have the client's exit flush (atexit, and SIGTERM, which skips atexit and so
        the provider's own shutdown) export OpenTelemetry's record batch first."""
        provider = get_logger_provider()
        if not isinstance(provider, LoggerProvider):
            return
        _stamp_global_provider(provider)
        self._provider = weakref.ref(provider)
        self.client.pipeline.add_producer(self._flush_batch)

    def _flush_batch(self) -> None:
        """Export what the batch processor wrapping this exporter holds (at exit)."""
        if not self._shutdown:
            flush_provider_at_exit(self.client, self._provider)

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
        body = record.body
        if body is None:  # optional in OpenTelemetry, required by capture_log (LOG-04)
            body = event_name if isinstance(event_name, str) and event_name.strip() else NO_BODY
        self.client.capture_log(
            body,
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
        release_client(self.client, self._owns_client)


class IdentityStamper(LogRecordProcessor):
    """Adds the identity context's ``posthogDistinctId``/``sessionId`` to each record
    as it is logged (on the logging thread), unless the record's attributes carry
    them: put it before the ``BatchLogRecordProcessor`` (``instrument_logs`` does)."""

    def on_emit(self, log_record: Any) -> None:
        identity = _current.get()
        if identity is None:
            return
        try:
            record = log_record.log_record
            attributes = record.attributes
            if attributes is None:
                record.attributes = attributes = {}
            if identity.distinct_id and "posthogDistinctId" not in attributes:
                attributes["posthogDistinctId"] = identity.distinct_id
            if identity.session_id and "sessionId" not in attributes:
                attributes["sessionId"] = identity.session_id
        except Exception:  # an immutable or foreign record: sent without the identity
            logger.debug("could not stamp identity on a log record", exc_info=True)

    def emit(self, log_record: Any) -> None:  # the name older SDKs call
        self.on_emit(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class PostHogLogProcessor(LogRecordProcessor):
    """Stamps the identity context on each record as it is logged (``IdentityStamper``)
    and exports it through a ``BatchLogRecordProcessor`` of ``PostHogLogExporter``;
    ``force_flush`` also flushes the client, so ``provider.force_flush()`` (a serverless
    handler's last call) really delivers: the batch processor alone never calls the
    exporter's ``force_flush``, it only moves records into the logs lane's queue."""

    def __init__(self, exporter: PostHogLogExporter, **batch_options: Any) -> None:
        self.exporter = exporter
        self._stamper = IdentityStamper()
        self._batch = BatchLogRecordProcessor(exporter, **batch_options)
        # At exit, the client's hook exports what the batch holds before its last flush,
        # whether or not the provider shuts down (and whenever its hook runs).
        exporter.client.pipeline.add_producer(self._batch.force_flush)

    def on_emit(self, log_record: Any) -> None:
        self._stamper.on_emit(log_record)
        self._batch.on_emit(log_record)

    def emit(self, log_record: Any) -> None:  # the name older SDKs call
        self.on_emit(log_record)

    def shutdown(self) -> None:
        self._batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        drained = self._batch.force_flush(timeout_millis)
        return self.exporter.client.flush(timeout_millis / 1000) and drained


def instrument_logs(
    provider: LoggerProvider, client: Client | None = None, **batch_options: Any
) -> PostHogLogProcessor:
    """Attach PostHog Logs to ``provider``: a ``PostHogLogProcessor`` over a
    ``PostHogLogExporter`` of ``client`` (the default client when none): the identity
    context on each record as it is logged, a ``BatchLogRecordProcessor``
    (``batch_options``), and a ``force_flush`` that delivers the logs lane too
    (``provider.force_flush()`` before a serverless handler returns). Returns it."""
    if client is None:
        from .client import default_client

        client = default_client()
    processor = PostHogLogProcessor(PostHogLogExporter(client), **batch_options)
    provider.add_log_record_processor(processor)
    return processor


_stamped_providers: weakref.WeakSet[LoggerProvider] = weakref.WeakSet()


def _named_by_otel_environment() -> bool:
    """Whether ``OTEL_LOGS_EXPORTER`` names this exporter: the zero-code path."""
    names = os.environ.get("OTEL_LOGS_EXPORTER", "")
    return "posthog" in (name.strip() for name in names.split(","))


def _stamp_global_provider(provider: LoggerProvider) -> None:
    """Zero-code: the configurator made the global provider just before building this
    exporter and adds the exporter's batch processor right after, so a stamper added
    now runs first on each record."""
    if provider not in _stamped_providers:
        _stamped_providers.add(provider)
        provider.add_log_record_processor(IdentityStamper())


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
