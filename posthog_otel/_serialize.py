"""JSON for the whole package, in one place: events on the flush thread (``export``),
flag requests (``flags``), the snapshots taken on the caller's thread (``_snapshot``).

orjson does the work; values it cannot encode go through ``default`` (which converts
them the way the official SDK's ``clean`` does). Only when orjson refuses the event
(integers beyond 64 bits, cycles, nesting beyond its 254 levels, a string with a lone
surrogate, odd keys) is it cleaned in pure Python (``clean``) and tried once more. The
clean copy repairs rather than drops, and says what it repaired (``Repairs``), which the
caller counts in ``stats.corrected``:

- a string (value or key) that is not valid Unicode (a lone surrogate, e.g. a file name
  from ``os.fsdecode``) gets U+FFFD in place of each bad code point (``invalid_string``);
- a value nested more than ``MAX_DEPTH`` levels below the event's ``properties`` becomes
  the ``TOO_DEEP`` marker string (``truncated_depth``);
- a container (dict, list, dataclass...) that contains itself becomes ``null`` where it
  recurs (``circular_reference``).

Whatever happens, one bad value never poisons the event or the batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from ._log import logger

OPTIONS = orjson.OPT_NON_STR_KEYS
"""orjson options of every encoding (``dumps``, and the encoder's inlined fast path)."""
_UTC = timezone.utc

MAX_DEPTH = 64
"""Levels of nesting kept inside a property value (orjson itself stops at 254)."""
TOO_DEEP = f"[posthog-otel: nested deeper than {MAX_DEPTH} levels]"
"""What a value nested deeper than ``MAX_DEPTH`` is replaced by."""

Repairs = dict[str, int]
"""What ``clean`` repaired: ``invalid_string``, ``truncated_depth``, ``circular_reference``."""


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


def dumps(obj: Any, correct: Callable[[str, str], object] | None = None, depth: int = 0) -> bytes:
    """Serialize ``obj`` to JSON bytes, converting what JSON cannot carry; never raises
    for values inside ``obj`` (a ``TypeError`` only if even the cleaned form fails).

    The fast path is orjson alone; the pure-Python ``clean`` runs only when orjson
    refuses, and each repair it makes is counted with ``correct``
    (``StatsRecorder.correct``). ``depth`` is the nesting level of ``obj`` itself
    (negative when the counted levels start below it: the wire event passes -1 so that
    its ``properties`` are level 0)."""
    try:
        return orjson.dumps(obj, default=default, option=OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        pass
    repairs: Repairs = {}
    payload = orjson.dumps(clean(obj, set(), repairs=repairs, depth=depth), option=OPTIONS)
    if repairs and correct is not None:
        name = obj.get("event") if isinstance(obj, dict) else None
        count_repairs(correct, repairs, name)
    return payload


def default(value: Any) -> Any:
    """orjson's ``default``: what JSON cannot carry, converted (``None`` if unknown)."""
    if isinstance(value, Decimal):
        return _from_decimal(value)
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


def clean(
    value: Any,
    seen: set[int] | None = None,
    *,
    repairs: Repairs | None = None,
    depth: int = 0,
    unknown: Callable[[Any], Any] | None = None,
) -> Any:
    """A JSON-safe copy of ``value``: the slow path behind ``dumps`` (and the snapshot's
    path for unusual values). Repairs what it can (see the module docstring) and notes
    each repair in ``repairs``; never recurses deeper than ``MAX_DEPTH`` levels.
    ``unknown`` renders what ``default`` has no conversion for (``null`` without it):
    the OTLP lanes send such a value by ``str()``, taken now."""
    if repairs is None:
        repairs = {}
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _valid_str(value, repairs)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return _from_decimal(value)
    if isinstance(value, bytes):
        decoded = _decode(value)
        return decoded if decoded is None else _valid_str(decoded, repairs)
    if seen is None:
        seen = set()
    key = id(value)  # the original object: a dataclass or model converts to a new one
    if key in seen:
        _note(repairs, "circular_reference")
        return None
    if depth > MAX_DEPTH:
        _note(repairs, "truncated_depth")
        return TOO_DEEP
    seen.add(key)
    try:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        elif not isinstance(value, Mapping | list | tuple | set | frozenset | deque):
            converted = default(value)
            if converted is None and unknown is not None:
                return unknown(value)
            value = converted
            if not isinstance(value, Mapping | list | tuple | set | frozenset | deque):
                return clean(value, seen, repairs=repairs, depth=depth, unknown=unknown)
        depth += 1
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for item_key, item in value.items():
                try:
                    name = item_key if isinstance(item_key, str) else str(item_key)
                    out[_valid_str(name, repairs)] = clean(
                        item, seen, repairs=repairs, depth=depth, unknown=unknown
                    )
                except Exception:
                    logger.debug("dropping a property value that cannot be converted")
            return out
        items = []
        for item in value:
            try:
                items.append(clean(item, seen, repairs=repairs, depth=depth, unknown=unknown))
            except Exception:
                logger.debug("a list item that cannot be converted becomes null")
                items.append(None)
        return items
    finally:
        seen.discard(key)


_REPAIRED = {
    "invalid_string": "a string that is not valid Unicode got U+FFFD for each lone surrogate",
    "truncated_depth": f"a value nested deeper than {MAX_DEPTH} levels was replaced by a marker",
    "circular_reference": "a value that contains itself became null where it recurs",
}


def count_repairs(correct: Callable[[str, str], object], repairs: Repairs, event: object) -> None:
    """Count each repair with ``correct`` (``StatsRecorder.correct``): once per repair."""
    for what, count in repairs.items():
        detail = f"event {event!r}: {_REPAIRED.get(what, what)}; the event was kept"
        for _ in range(count):
            correct(what, detail)


def _note(repairs: Repairs, what: str) -> None:
    repairs[what] = repairs.get(what, 0) + 1


def _valid_str(value: str, repairs: Repairs) -> str:
    """``value``, or a copy with U+FFFD for each lone surrogate (valid pairs joined)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _note(repairs, "invalid_string")
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _from_decimal(value: Decimal) -> float | None:
    try:
        return _finite(float(value))
    except ValueError:  # a signalling NaN
        return None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _decode(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None
