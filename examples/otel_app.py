"""OpenTelemetry spans that carry a distinct id become PostHog events.

    python examples/otel_app.py

Zero-code alternative (with opentelemetry-distro installed):

    OTEL_TRACES_EXPORTER=posthog OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \\
    POSTHOG_API_KEY=phc_... opentelemetry-instrument python your_app.py
"""

from __future__ import annotations

from _common import posthog_client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from posthog_otel import context
from posthog_otel.otel import instrument


def main() -> None:
    with posthog_client() as client:
        provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
        instrument(provider, client)  # stamps identity at span start; flush delivers
        tracer = provider.get_tracer("shop")

        # A span with identity in its own attributes is an event.
        with tracer.start_as_current_span("order_placed", attributes={"user.id": "user-1"}):
            pass
        # Inside an identity context, the request's root span is the event;
        # its child spans (database calls, ...) are not.
        with (
            context(distinct_id="user-2"),
            tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER),
            tracer.start_as_current_span("SELECT * FROM carts"),
        ):
            pass
        provider.force_flush()
        provider.shutdown()


if __name__ == "__main__":
    main()
