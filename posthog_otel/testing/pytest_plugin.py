"""pytest plugin (entry point ``pytest11``): the ``posthog_server`` and
``posthog_default_client`` fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ._server import FakePostHog

if TYPE_CHECKING:
    from ..client import Client

TEST_API_KEY = "phc_posthog_otel_test"
# Short enough that ``posthog_server.wait_for_events`` returns promptly without a flush().
TEST_FLUSH_INTERVAL = 0.05


@pytest.fixture
def posthog_server() -> Iterator[FakePostHog]:
    """A started ``FakePostHog`` on a random loopback port, stopped after the test."""
    with FakePostHog() as server:
        yield server


@pytest.fixture
def posthog_default_client(posthog_server: FakePostHog) -> Iterator[Client]:
    """A client on this test's ``posthog_server``, installed as the default client.

    Code under test that uses ``posthog_otel.default_client()`` sends to this test's
    server, and so do integrations built without a client (``PostHogHandler()``,
    ``PostHogProcessor()``, ``PostHogProvider()``, ``dictConfig`` handlers without
    ``api_key``): those built during the test, and the logging handlers and structlog
    processors already configured with the previous default client (say, by Django's
    ``LOGGING`` at start-up), which are pointed at this client for the test. It flushes
    every 50 ms; after the test it is closed, and the previous default client and its
    integrations are put back as they were.
    """
    from .._default import move_integrations
    from ..client import Client, swap_default_client

    client = Client(
        TEST_API_KEY,
        host=posthog_server.url,
        flush_interval=TEST_FLUSH_INTERVAL,
        shutdown_timeout=2.0,
    )
    previous, owned = swap_default_client(client, owned=False)
    move_integrations(previous, client)
    try:
        yield client
    finally:
        swap_default_client(previous, owned=owned)
        move_integrations(client, previous)
        client.close()
