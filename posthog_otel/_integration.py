"""What the logging handler, the structlog processor and the span exporter share:
the client they feed, identity lookups, and the active OpenTelemetry span ids."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._context import PERSONLESS, active_span_ids

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "PERSONLESS",
    "active_span_ids",
    "first_id",
    "flush_provider_at_exit",
    "release_client",
    "resolve_client",
]


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


def flush_provider_at_exit(client: Client, provider: Callable[[], Any] | None) -> None:
    """``force_flush()`` of the provider ``provider`` (a weak reference, or ``None``)
    still points to, within what is left of the client's exit flush (else its
    ``shutdown_timeout``): on the zero-code path the configurator wrapped our exporter
    in a batch processor it did not hand back, and the provider's public
    ``force_flush`` reaches it (and the provider's other processors)."""
    target = provider() if provider is not None else None
    if target is None:
        return
    left = client.pipeline.exit_deadline
    timeout = client.shutdown_timeout if left is None else left - time.monotonic()
    target.force_flush(max(int(timeout * 1000), 0))


def first_id(values: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first non-empty value among ``keys``, as a string."""
    for key in keys:
        value = values.get(key)
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return None
