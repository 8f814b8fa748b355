"""Replacing the shared default client: the integrations built without a client follow
it (a handler set up by ``dictConfig`` at start-up would otherwise keep feeding the first
default client for the life of the process)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from .client import Client, default_client, swap_default_client

__all__ = ["reset_default_client", "set_default_client"]


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
    previous, owned = swap_default_client(client, owned=False)
    if previous is None or previous is client:
        return
    if client is None and _integrations_feeding(previous):
        client = default_client()  # they need a live client: a fresh one from the env
    move_integrations(previous, client)
    if owned:
        previous.close()


def reset_default_client() -> None:
    """Forget the default client (closing it if ``default_client()`` built it), so the
    next ``default_client()`` reads the environment again."""
    set_default_client(None)


def move_integrations(old: Client | None, new: Client | None) -> None:
    """Point the integrations that feed ``old`` (see ``_integrations_feeding``) at ``new``."""
    if old is None or new is None or old is new:
        return
    for integration in _integrations_feeding(old):
        integration.client = new


def _integrations_feeding(client: Client) -> list[Any]:
    """The ``PostHogHandler``s attached to any logger and the ``PostHogProcessor``s in
    structlog's configuration (or in a ``ProcessorFormatter`` of an attached handler)
    that feed ``client`` and follow the default client (not given one)."""
    candidates: list[Any] = []
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for log in loggers:
        for handler in getattr(log, "handlers", ()):
            candidates.append(handler)
            formatter = handler.formatter
            candidates += getattr(formatter, "processors", None) or ()
            candidates += getattr(formatter, "foreign_pre_chain", None) or ()
    structlog = sys.modules.get("structlog")
    if structlog is not None:
        candidates += structlog.get_config().get("processors", ())
    found: list[Any] = []
    for item in candidates:
        if any(item is seen for seen in found):
            continue
        # Only our integrations carry this marker (duck-typed: their modules may not be
        # imported, and importing them here would load their optional dependencies).
        if getattr(item, "follows_default_client", False) and item.client is client:
            found.append(item)
    return found
