"""Shared by the examples: a client for the real PostHog when POSTHOG_API_KEY is set,
else for a fake PostHog started on 127.0.0.1, whose received events are printed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

from posthog_otel import Client
from posthog_otel.testing import FakePostHog


@contextmanager
def posthog_client() -> Iterator[Client]:
    """Yield a client; on exit, close it and show what was delivered."""
    if os.environ.get("POSTHOG_API_KEY"):
        client = Client()  # POSTHOG_API_KEY / POSTHOG_HOST from the environment
        try:
            yield client
        finally:
            delivered = client.close(timeout=10)
            print(f"sent to {client.host}: delivered={delivered}")
        return
    with FakePostHog() as server:
        print(f"POSTHOG_API_KEY is not set: using a fake PostHog at {server.url}")
        client = Client("phc_example", host=server.url)
        try:
            yield client
        finally:
            delivered = client.close(timeout=10)
            print(f"delivered={delivered}; the server received {len(server.events)} events:")
            for event in server.events:
                print(" ", json.dumps(event, sort_keys=True))
