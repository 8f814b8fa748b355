"""Values a native span takes from its caller, made safe at the call (TRC-11): times as
Unix nanoseconds within i64, values of the moment, text that never raises, the
``exception`` event's attributes (TRC-05)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from ._snapshot import IMMUTABLE, as_text, snapshot_value

__all__ = ["MAX_NS", "copy_value", "exception_event", "text", "to_ns"]

MAX_NS = 2**63 - 1  # the server refuses a whole request over one time outside i64 ns


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


def copy_value(value: Any) -> Any:
    """The value as it is now, so a later mutation of the caller's object never changes
    what is sent: containers (any mapping, sequences, sets) copied, bytes-like values as
    ``bytes``, and what the encoder would render by ``str()`` rendered now
    (``_snapshot.snapshot_value`` with ``as_text``, the traces lane's own rule)."""
    if type(value) in IMMUTABLE:
        return value
    return snapshot_value(value, unknown=as_text)[0]


def text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ never breaks the caller
        return f"<unprintable {type(value).__name__}>"


def exception_event(exc: object) -> dict[str, Any]:
    """The ``exception`` event's attributes: the type's name and the message (TRC-05)."""
    return {"exception.type": type(exc).__name__, "exception.message": text(exc)}
