"""Values a native span takes from its caller, made safe at the call (TRC-11): times as
Unix nanoseconds within i64, containers copied, text that never raises, the
``exception`` event's attributes (TRC-05)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

__all__ = ["MAX_NS", "copy_value", "exception_event", "text", "to_ns"]

MAX_NS = 2**63 - 1  # the server refuses a whole request over one time outside i64 ns
_COPY_DEPTH = 8


def to_ns(value: object) -> int | None:
    """A caller-given time as Unix nanoseconds within ``[0, i64 max]``, else ``None``.

    An ``int`` is nanoseconds (as OpenTelemetry's API takes them), a ``float`` seconds
    (``time.time()``), a ``datetime`` as ``datetime.timestamp()`` reads it.
    """
    try:
        if type(value) is int:
            ns = value
        elif isinstance(value, float) and math.isfinite(value):
            ns = int(value * 1e9)
        elif isinstance(value, datetime):
            ns = int(value.timestamp() * 1e9)
        else:
            return None
    except (OverflowError, ValueError, OSError):
        return None
    return ns if 0 <= ns <= MAX_NS else None


def copy_value(value: Any, depth: int = 0) -> Any:
    """Containers copied now, so a later mutation of the caller's list or dict never
    changes what is sent; anything else is kept as it is (encoded at export)."""
    if depth >= _COPY_DEPTH:
        return value
    try:
        if type(value) is dict:
            return {k: copy_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [copy_value(v, depth + 1) for v in value]
    except Exception:  # a container that cannot be iterated: encoded as it is later
        pass
    return value


def text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ never breaks the caller
        return f"<unprintable {type(value).__name__}>"


def exception_event(exc: object) -> dict[str, Any]:
    """The ``exception`` event's attributes: the type's name and the message (TRC-05)."""
    return {"exception.type": type(exc).__name__, "exception.message": text(exc)}
