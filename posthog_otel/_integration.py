"""What the logging handler, the structlog processor and the span exporter share:
the client they feed, identity lookups, and the active OpenTelemetry span ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._context import PERSONLESS, active_span_ids

if TYPE_CHECKING:
    from .client import Client

__all__ = ["PERSONLESS", "active_span_ids", "first_id", "release_client", "resolve_client"]


def resolve_client(
    client: Client | None, api_key: str | None, host: str | None
) -> tuple[Client, bool]:
    """The client to feed and whether we own it: the given one, one built from
    ``api_key``/``host`` (for ``dictConfig``), or the shared default client."""
    if client is not None:
        return client, False
    if api_key is not None or host is not None:
        from .client import Client

        return Client(api_key, host=host), True
    from .client import default_client

    return default_client(), False


def release_client(client: Client, owned: bool) -> None:
    """What an integration's ``close``/``shutdown`` does to its client, within the
    client's ``shutdown_timeout``: close one it built, only flush one it was given."""
    if owned:
        client.close(client.shutdown_timeout)
    else:
        client.flush(client.shutdown_timeout)


def first_id(values: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first non-empty value among ``keys``, as a string."""
    for key in keys:
        value = values.get(key)
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return None
