"""Turning assembled events into JSON bytes, on the flush thread.

orjson does the work; values it cannot encode go through ``_default`` (which converts
them the way the official SDK's ``clean`` does), and an event orjson still refuses
(integers beyond 64 bits, cycles, odd keys) is cleaned in pure Python and tried once
more. Whatever happens, one bad value becomes ``null``; it never poisons a batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from .._log import logger

_OPTIONS = orjson.OPT_NON_STR_KEYS
_UTC = timezone.utc


def format_timestamp(value: object) -> tuple[str, bool]:
    """An ISO-8601 UTC timestamp for ``value`` and whether ``value`` was usable.

    Accepts epoch seconds (the client records ``time.time()``), aware datetimes (converted
    to UTC), naive datetimes (taken as UTC) and ISO-8601 strings with a time part.
    Anything else becomes "now".
    """
    if isinstance(value, float | int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, _UTC).isoformat(), True
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, datetime):
        return _utc(value).isoformat(), True
    elif isinstance(value, str) and ("T" in value or " " in value.strip()):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return _utc(datetime.fromisoformat(text)).isoformat(), True
        except ValueError:
            pass
    return datetime.now(_UTC).isoformat(), False


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` to JSON bytes, converting what JSON cannot carry; never raises
    for values inside ``obj`` (a ``TypeError`` only if even the cleaned form fails)."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(clean(obj, set()), option=_OPTIONS)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _finite(float(value))
    if isinstance(value, set | frozenset | deque):
        return list(value)
    if isinstance(value, bytes):
        return _decode(value)
    if isinstance(value, complex):
        return None
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        try:
            return model_dump()
        except Exception:  # a model that fails to dump becomes null
            return None
    if isinstance(value, Mapping):
        return dict(value)
    return None


def clean(value: Any, seen: set[int]) -> Any:
    """A JSON-safe copy of ``value``: the slow path behind ``dumps``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return _finite(float(value))
    if isinstance(value, bytes):
        return _decode(value)
    if id(value) in seen:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    elif not isinstance(value, Mapping | list | tuple | set | frozenset | deque):
        value = _default(value)
        if value is None or isinstance(value, str):
            return value
    seen.add(id(value))
    try:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                try:
                    out[key if isinstance(key, str) else str(key)] = clean(item, seen)
                except Exception:
                    logger.debug("dropping a property value that cannot be converted: %r", key)
            return out
        return [clean(item, seen) for item in value]
    finally:
        seen.discard(id(value))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _decode(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None
