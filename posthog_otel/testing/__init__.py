"""Test support: a fake PostHog server (with ``DevView``, the live web view of
``posthog-otel dev-server``), a controllable clock, and pytest fixtures.

The fixtures are registered through the ``pytest11`` entry point: ``posthog_server``
yields a started ``FakePostHog`` (give ``posthog_server.url`` to a client as ``host``);
``posthog_default_client`` installs a client on that server as the default client for
the test (see README, "Testing your code").
"""

from ._clock import FakeClock
from ._devview import DevView
from ._flag_cache import InMemoryFlagDefinitionCache
from ._server import FakePostHog, RecordedRequest

__all__ = ["DevView", "FakeClock", "FakePostHog", "InMemoryFlagDefinitionCache", "RecordedRequest"]
