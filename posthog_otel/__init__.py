"""posthog-otel: PostHog analytics and feature flags from the telemetry a service
already produces.

Importing the package is cheap: the client, the integrations and their optional
dependencies (httpx, OpenTelemetry, structlog, OpenFeature) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._context import context, get_distinct_id
from ._version import __version__

if TYPE_CHECKING:
    from ._autocapture import capture_asyncio_exceptions
    from ._default import reset_default_client, set_default_client
    from ._logs_config import LogsConfig
    from ._stats import ClientStats
    from ._traces_config import TracesConfig
    from .client import Client, default_client, flush_on_exit
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
    "LogsConfig",
    "PostHogHandler",
    "PostHogProcessor",
    "PostHogProvider",
    "PostHogSpanExporter",
    "Properties",
    "TracesConfig",
    "__version__",
    "capture_asyncio_exceptions",
    "context",
    "default_client",
    "flush_on_exit",
    "get_distinct_id",
    "reset_default_client",
    "set_default_client",
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
    "LogsConfig": "._logs_config",  # PostHog Logs options: Client(logs=LogsConfig(...))
    "TracesConfig": "._traces_config",  # PostHog Traces options: Client(traces=...)
    # Integrations: their optional dependencies load only when they are first used.
    "PostHogHandler": ".logging",
    "PostHogProcessor": ".structlog",
    "PostHogSpanExporter": ".otel",
    "PostHogProvider": ".openfeature",
    # Graceful stop: flush every open client where atexit may not run.
    "flush_on_exit": ".client",
    # The shared client the integrations feed when given none.
    "default_client": ".client",
    "set_default_client": "._default",
    "reset_default_client": "._default",
    # Error tracking: uncaught exceptions of an asyncio loop (with autocapture).
    "capture_asyncio_exceptions": "._autocapture",
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
