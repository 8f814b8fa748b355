"""The active OpenTelemetry span's ids, for records captured inside a span (the logging
integrations and ``capture_log``), without ever importing OpenTelemetry ourselves."""

from __future__ import annotations

import sys

__all__ = ["active_span_ids"]


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
