"""posthog-otel: PostHog analytics and feature flags from the telemetry a service
already produces.

Importing the package is cheap: the client, the integrations and their optional
dependencies (httpx, OpenTelemetry, structlog, OpenFeature) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._context import context, get_distinct_id
from ._fork import fork_safe_lock
from ._version import __version__

if TYPE_CHECKING:
    from ._stats import ClientStats
    from .client import Client, flush_on_exit
    from .flags import FlagEvaluations, FlagResult
    from .logging import PostHogHandler
    from .messages import Alias, Capture, GroupIdentify, Groups, Identify, Properties
    from .openfeature import PostHogProvider
    from .otel import PostHogSpanExporter
    from .structlog import PostHogProcessor

__all__ = [
    "Alias",
    "Capture",
    "Client",
    "ClientStats",
    "FlagEvaluations",
    "FlagResult",
    "GroupIdentify",
    "Groups",
    "Identify",
    "PostHogHandler",
    "PostHogProcessor",
    "PostHogProvider",
    "PostHogSpanExporter",
    "Properties",
    "__version__",
    "context",
    "default_client",
    "flush_on_exit",
    "get_distinct_id",
]

_LAZY = {
    "Client": ".client",
    "ClientStats": "._stats",
    "Capture": ".messages",
    "Identify": ".messages",
    "Alias": ".messages",
    "GroupIdentify": ".messages",
    "Properties": ".messages",
    "Groups": ".messages",
    "FlagResult": ".flags",
    "FlagEvaluations": ".flags",
    # Integrations: their optional dependencies load only when they are first used.
    "PostHogHandler": ".logging",
    "PostHogProcessor": ".structlog",
    "PostHogSpanExporter": ".otel",
    "PostHogProvider": ".openfeature",
    # Graceful stop: flush every open client where atexit may not run.
    "flush_on_exit": ".client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'posthog_otel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


_default_client: Client | None = None
_default_lock = fork_safe_lock()


def default_client() -> Client:
    """The shared client the integrations use when given none, configured from the
    environment (``POSTHOG_API_KEY``, ``POSTHOG_HOST``, ...) and flushed at exit."""
    global _default_client
    with _default_lock:
        if _default_client is None:
            from .client import Client

            _default_client = Client()
        return _default_client
