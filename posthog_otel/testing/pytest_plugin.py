"""pytest plugin (entry point ``pytest11``): the ``posthog_server`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import FakePostHog


@pytest.fixture
def posthog_server() -> Iterator[FakePostHog]:
    """A started ``FakePostHog`` on a random loopback port, stopped after the test."""
    with FakePostHog() as server:
        yield server
