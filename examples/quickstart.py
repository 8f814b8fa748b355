"""Send a few real events through posthog-otel: messages, a log record, a structlog
event and an OpenTelemetry span.

With POSTHOG_API_KEY (and optionally POSTHOG_HOST) set, the events go to that PostHog.
Without it, a built-in fake PostHog is started on 127.0.0.1, the events go there, and
the script prints what the server received.

    python examples/quickstart.py
"""

from __future__ import annotations

import json
import os

from posthog_otel import Alias, Capture, Client, GroupIdentify, Identify, Properties, context
from posthog_otel.testing import FakePostHog


def send_events(client: Client) -> None:
    client.enqueue(
        Capture("user_signed_up", distinct_id="user-1", properties=Properties().set("plan", "pro"))
    )
    client.enqueue(Identify("user-1", {"email": "ada@example.com"}, set_once={"source": "docs"}))
    client.enqueue(Alias(distinct_id="anonymous-42", alias="user-1"))
    client.enqueue(GroupIdentify("company", "acme", {"employees": 12}))
    client.capture("$pageview", "user-1", {"$current_url": "https://example.com/pricing"})
    with context(distinct_id="user-1", session_id="session-7"):
        client.capture("checkout_started", properties={"cart_items": 3})
    send_telemetry(client)


def send_telemetry(client: Client) -> None:
    """The same client fed by the telemetry a service already produces."""
    import logging

    import structlog
    from opentelemetry.sdk.trace import TracerProvider

    from posthog_otel import PostHogHandler, PostHogProcessor
    from posthog_otel.otel import instrument

    # 1. stdlib logging: a record with a distinct id is an event.
    log = logging.getLogger("quickstart")
    log.setLevel(logging.INFO)
    handler = PostHogHandler(client)
    log.addHandler(handler)
    log.info("report_exported", extra={"distinct_id": "user-1", "rows": 1200})
    log.removeHandler(handler)

    # 2. structlog: the processor captures, then the chain renders as usual.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            PostHogProcessor(client),
            structlog.processors.KeyValueRenderer(),
        ]
    )
    structlog.get_logger().info("invite_sent", distinct_id="user-1", invitees=2)

    # 3. OpenTelemetry: a span with identity (or a root span in an identity context).
    provider = TracerProvider()
    instrument(provider, client)
    with provider.get_tracer("quickstart").start_as_current_span(
        "order_placed", attributes={"user.id": "user-1", "amount": 99}
    ):
        pass
    provider.shutdown()


def main() -> None:
    if os.environ.get("POSTHOG_API_KEY"):
        with Client() as client:  # POSTHOG_API_KEY / POSTHOG_HOST from the environment
            send_events(client)
            delivered = client.flush(timeout=10)
            print(f"sent to {client.host}: delivered={delivered} stats={client.stats}")
        return

    with FakePostHog() as server:
        print(f"POSTHOG_API_KEY is not set: using a fake PostHog at {server.url}")
        client = Client("phc_quickstart", host=server.url)
        send_events(client)
        delivered = client.close(timeout=10)
        print(f"delivered={delivered}; the server received {len(server.events)} events:")
        for event in server.events:
            print(json.dumps(event, indent=None, sort_keys=True))


if __name__ == "__main__":
    main()
