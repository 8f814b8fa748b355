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
_default_owned = False  # True when default_client() built it (then it is ours to close)
_default_lock = fork_safe_lock()


def default_client() -> Client:
    """The shared client the integrations use when given none, configured from the
    environment (``POSTHOG_API_KEY``, ``POSTHOG_HOST``, ...) and flushed at exit."""
    global _default_client, _default_owned
    with _default_lock:
        if _default_client is None:
            from .client import Client

            _default_client = Client()
            _default_owned = True
        return _default_client


def set_default_client(client: Client | None) -> None:
    """Make ``client`` the one ``default_client()`` returns (``None``: build one from the
    environment again on next use).

    For tests and for applications that build their client themselves. Integrations
    created afterwards without a client (``PostHogHandler()``, ``PostHogProcessor()``,
    ``PostHogProvider()``, a ``dictConfig`` handler without ``api_key``) feed it, and
    the logging handlers and structlog processors already configured with the previous
    default client are pointed at it. A default client that ``default_client()`` built
    is closed when replaced; one you set is yours, and is never closed here.
    """
    previous, owned = _swap_default_client(client, owned=False)
    if previous is None or previous is client:
        return
    if client is None and _integrations_feeding(previous):
        client = default_client()  # they need a live client: a fresh one from the env
    _move_integrations(previous, client)
    if owned:
        previous.close()


def reset_default_client() -> None:
    """Forget the default client (closing it if ``default_client()`` built it), so the
    next ``default_client()`` reads the environment again."""
    set_default_client(None)


def _swap_default_client(client: Client | None, *, owned: bool) -> tuple[Client | None, bool]:
    """Install ``client`` as the default; the previous one and whether we built it (the
    pytest fixture puts it back afterwards, untouched)."""
    global _default_client, _default_owned
    with _default_lock:
        previous = (_default_client, _default_owned)
        _default_client, _default_owned = client, owned and client is not None
    return previous


def _move_integrations(old: Client | None, new: Client | None) -> None:
    """Point the integrations that feed ``old`` (see ``_integrations_feeding``) at ``new``."""
    if old is None or new is None or old is new:
        return
    for integration in _integrations_feeding(old):
        integration.client = new


def _integrations_feeding(client: Client) -> list[Any]:
    """The ``PostHogHandler``s attached to any logger and the ``PostHogProcessor``s in
    structlog's configuration (or in a ``ProcessorFormatter`` of an attached handler)
    that feed ``client``: those built without a client follow the default client when
    it is replaced (a handler set up by ``dictConfig`` at start-up would otherwise keep
    feeding the first one for the life of the process)."""
    import logging
    import sys

    structlog = sys.modules.get("structlog")
    handler_type = _loaded("PostHogHandler")
    processor_type = _loaded("PostHogProcessor")
    candidates: list[Any] = []
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for log in loggers:
        for handler in getattr(log, "handlers", ()):
            candidates.append(handler)
            formatter = handler.formatter
            candidates += getattr(formatter, "processors", None) or ()
            candidates += getattr(formatter, "foreign_pre_chain", None) or ()
    if structlog is not None:
        candidates += structlog.get_config().get("processors", ())
    found: list[Any] = []
    for item in candidates:
        if any(item is seen for seen in found):
            continue
        is_handler = handler_type is not None and isinstance(item, handler_type)
        is_processor = processor_type is not None and isinstance(item, processor_type)
        follows = (is_handler and not item._owns_client) or is_processor
        if follows and item.client is client:
            found.append(item)
    return found


def _loaded(name: str) -> Any:
    """An integration class if its module was imported (never importing it here)."""
    import sys

    module = sys.modules.get(__name__ + _LAZY[name])
    return getattr(module, name, None) if module is not None else globals().get(name)
