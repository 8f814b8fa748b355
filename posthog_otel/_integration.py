"""What the logging handler, the structlog processor and the span exporter share:
the client they feed, identity lookups, and the active OpenTelemetry span ids."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._context import IdentityContext

if TYPE_CHECKING:
    from .client import Client

# Inside this context, a capture without a distinct id is sent personless.
PERSONLESS = IdentityContext()


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


def first_id(values: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first non-empty value among ``keys``, as a string."""
    for key in keys:
        value = values.get(key)
        if value is not None and value != "":
            return value if isinstance(value, str) else str(value)
    return None


def active_span_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the active OpenTelemetry span, as lowercase hex.

    Only looked up when the application already imported OpenTelemetry: we never
    import it ourselves on a hot path.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
