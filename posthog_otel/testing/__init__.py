"""Test support: a fake PostHog server, a controllable clock, and a pytest fixture.

``posthog_server`` (a pytest fixture, registered through the ``pytest11`` entry point)
yields a started ``FakePostHog``; give ``posthog_server.url`` to the client as ``host``.
"""

from ._clock import FakeClock
from ._flag_cache import InMemoryFlagDefinitionCache
from ._server import FakePostHog, RecordedRequest

__all__ = ["FakeClock", "FakePostHog", "InMemoryFlagDefinitionCache", "RecordedRequest"]
