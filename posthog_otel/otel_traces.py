"""OpenTelemetry's tracing SDK: every finished span to PostHog Traces, and nothing else.

Attach to the application's tracer provider::

    posthog_otel.otel_traces.instrument_traces(provider, client)  # identity + batch

or, with only the span's own attributes for identity (``provider.force_flush()`` then
only queues: call ``client.flush()`` too)::

    provider.add_span_processor(BatchSpanProcessor(PostHogTraceExporter(client)))

Each span goes to the client's traces lane (``client.traces``: ``TracesConfig``'s
``before_send``, limits and queue, counters in ``client.stats.traces``) as
``otel.span_record`` converts it; no analytics event is made (that is
``otel.PostHogSpanExporter``, which sends spans to both with ``traces=True``).
``export`` returns at once: the lane's own thread encodes and sends, so a slow traces
endpoint delays neither the application nor analytics events.

Zero-code: the entry point ``opentelemetry_traces_exporter = posthog_traces`` lets
``OTEL_TRACES_EXPORTER=posthog_traces opentelemetry-instrument python app.py`` ship the
spans with a client configured from ``POSTHOG_API_KEY``/``POSTHOG_HOST``, identity
stamped on the global provider as with ``instrument_traces``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import TracerProvider

from .otel import PostHogSpanExporter, PostHogSpanProcessor

if TYPE_CHECKING:
    from .client import Client

__all__ = ["PostHogTraceExporter", "instrument_traces"]


class PostHogTraceExporter(PostHogSpanExporter):
    """Queues each finished OpenTelemetry span on the client's traces lane, identified
    or not; makes no analytics or ``$exception`` event.

    With ``client=None`` the exporter builds and owns a client configured from the
    environment; its ``shutdown()`` closes that client, and only flushes the traces
    lane of a client you passed in. ``force_flush`` delivers the traces lane only: a
    failing analytics endpoint never holds it up. After ``shutdown()``, ``export``
    returns ``FAILURE``.
    """

    _entry_point = "posthog_traces"
    _events = False

    def __init__(self, client: Client | None = None, *, privacy_mode: bool | None = None) -> None:
        """``privacy_mode=True`` (``None``: ``POSTHOG_PRIVACY_MODE``): an AI span goes
        without its prompts, completions, tool data and error text (README "LLM
        analytics")."""
        super().__init__(client, exceptions=False, traces=True, privacy_mode=privacy_mode)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what the traces lane holds (``True`` if all of it was delivered)."""
        return self.client.traces.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Deliver the traces lane; close the client only if this exporter created it."""
        if self._shutdown:
            return
        self._shutdown = True
        if self._owns_client:
            self.client.close(self.client.shutdown_timeout)
        else:
            self.client.traces.flush(self.client.shutdown_timeout)


def instrument_traces(
    provider: TracerProvider,
    client: Client | None = None,
    *,
    privacy_mode: bool | None = None,
    **batch_options: Any,
) -> PostHogSpanProcessor:
    """Attach PostHog Traces to ``provider``: a ``PostHogSpanProcessor`` over a
    ``PostHogTraceExporter`` of ``client`` (the default client when none): identity
    stamping (the identity context and baggage ``posthog.distinct_id`` on each span as
    it starts, so batched spans keep it), a ``BatchSpanProcessor`` (``batch_options``),
    and a ``force_flush`` that delivers the traces lane too (``provider.force_flush()``
    before a serverless handler returns; a bare ``BatchSpanProcessor`` would only queue).
    ``privacy_mode`` as for ``PostHogTraceExporter``."""
    if client is None:
        from .client import default_client

        client = default_client()
    exporter = PostHogTraceExporter(client, privacy_mode=privacy_mode)
    processor = PostHogSpanProcessor(exporter, **batch_options)
    provider.add_span_processor(processor)
    return processor
