"""Values of the moment of capture, copied on the caller's thread.

An event is queued and encoded later, on the flush thread; if the queue held the
caller's own dicts and lists, a mutation after ``capture(...)``/``log.info(extra=...)``
would change what is sent. So the client and every integration pass the properties they
queue through ``snapshot_values``, which copies cheaply what can change:

- ``str``, ``int``, ``float``, ``bool``, ``None`` and the immutable ``datetime``,
  ``date``, ``time``, ``UUID``, ``Decimal``, ``bytes`` are kept as they are (nothing to
  copy);
- ``dict``/``list``/``tuple`` of those, nested up to ``MAX_DEPTH`` levels, are copied
  (a tuple becomes a list: the same JSON);
- anything else (sets, dataclasses, pydantic models, mappings that are not dicts, other
  objects, nesting deeper than ``MAX_DEPTH``, a value that contains itself) is converted
  now to its JSON form by the serializer's ``clean`` (a dataclass to a dict of its
  fields, a model through ``model_dump()``, a set to a list, an unknown object to
  ``null``), with its repairs counted in ``stats.corrected``. A ``model_dump`` that
  raises gives ``null``; nothing here calls ``__str__``/``__repr__`` of a value, and
  nothing raises into the caller for a value.

So the queue never holds a reference to the caller's mutable objects (nor to what they
reference, so nothing large stays pinned while the server is unreachable). Strings are
not scanned here: a lone surrogate is repaired, and counted, when the event is encoded.

Each call also returns a cheap estimate of the bytes the values take once encoded (for
the queue's byte bound): the length of every string plus ``ENTRY_BYTES`` per entry;
exact (the encoded length) for values that took the slow path. ``EVENT_BYTES`` covers
an event's fixed fields (uuid, timestamp, names, library properties). The logging
handler, whose budget is tightest, counts the formatted message and ``EVENT_BYTES``
when the extras are scalars (a log record's extras are small strings and numbers in
practice), and measures them like this module otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

from ._log import logger
from ._serialize import MAX_DEPTH, Repairs, clean, count_repairs, default

__all__ = [
    "ENTRY_BYTES",
    "EVENT_BYTES",
    "IMMUTABLE",
    "Correct",
    "as_text",
    "encoded_bytes",
    "snapshot_value",
    "snapshot_values",
]

ENTRY_BYTES = 16
"""Estimated encoded bytes of one entry besides its string lengths (quotes, key, comma)."""
EVENT_BYTES = 256
"""Estimated encoded bytes of an event besides its properties."""

IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), datetime, date, time, UUID, Decimal, bytes}
)
"""Types whose values are kept as they are (exact types: a subclass may be mutable)."""
Correct = Callable[[str, str], object]


class _Unusual(Exception):
    """Raised by the fast copier for a shape it does not handle: the slow path takes it."""


def snapshot_values(
    source: Mapping[Any, Any],
    target: dict[Any, Any],
    correct: Correct | None,
    event: object = "",
    *,
    unknown: Callable[[Any], Any] | None = None,
) -> int:
    """Replace, in ``target``, the value of each key of ``source`` that could change
    later by a copy taken now; the estimated encoded bytes of ``source``'s entries.

    ``target`` already holds ``source``'s entries (it is a fresh merge of them, or
    ``source`` itself when that is a fresh dict). A dict of scalars costs a loop of
    type checks: nothing is copied. ``correct`` (``StatsRecorder.correct``) counts the
    repairs of values that took the slow path; ``event`` names the event in warnings;
    ``unknown`` renders a value with no JSON conversion (``as_text`` for the OTLP lanes;
    ``null`` without it)."""
    size = ENTRY_BYTES * len(source)
    for value in source.values():
        cls = type(value)
        if cls is str:
            size += len(value)
        elif cls not in IMMUTABLE:
            return _snapshot_nested(source, target, correct, event, unknown)
    return size


def _snapshot_nested(
    source: Mapping[Any, Any],
    target: dict[Any, Any],
    correct: Correct | None,
    event: object,
    unknown: Callable[[Any], Any] | None,
) -> int:
    """``snapshot_values`` when some value is not a scalar."""
    size = ENTRY_BYTES * len(source)
    nested = []
    for key, value in source.items():
        cls = type(value)
        if cls is str:
            size += len(value)
        elif cls not in IMMUTABLE:
            nested.append(key)
    for key in nested:
        target[key], nbytes = snapshot_value(target[key], correct, event, unknown=unknown)
        size += nbytes
    return size


def snapshot_value(
    value: Any,
    correct: Correct | None = None,
    event: object = "",
    *,
    unknown: Callable[[Any], Any] | None = None,
) -> tuple[Any, int]:
    """A copy of one property value that later mutations cannot reach (see the module
    docstring for the rule), and its estimated encoded bytes; ``unknown`` as for
    ``snapshot_values``."""
    try:
        return _copy(value, 1)
    except Exception:  # _Unusual, or a container changed by another thread meanwhile
        pass
    repairs: Repairs = {}
    try:
        copy = clean(value, repairs=repairs, depth=1, unknown=unknown)
    except Exception:  # e.g. a mapping whose items() raises: the value is left out
        logger.debug("a property value could not be read; sent as null", exc_info=True)
        return None, ENTRY_BYTES
    if repairs and correct is not None:
        count_repairs(correct, repairs, event)
    try:
        nbytes = len(orjson.dumps(copy, default=_base64_size, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):  # a surrogate: repaired at encode
        nbytes = ENTRY_BYTES
    return copy, nbytes


def encoded_bytes(event: Mapping[str, Any]) -> int:
    """The encoded size of an already snapshotted event, measured (for the rare message
    types and for events completed off the caller's thread)."""
    try:
        return len(orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):  # a surrogate or a cycle: an estimate
        return EVENT_BYTES + ENTRY_BYTES * len(event.get("properties") or ())


def as_text(value: Any) -> Any:
    """How the OTLP lanes take a value JSON has no conversion for (an enum member, a
    path, an exception, any object): what their encoder sends for it (``AnyValue`` by
    runtime type, else ``str()``), computed now so a later change is not sent. A
    bytes-like value is copied as ``bytes`` (``bytesValue``); a ``__str__`` that raises
    gives a placeholder."""
    if isinstance(value, bytearray | memoryview):
        try:
            return bytes(value)
        except Exception:  # a memoryview of a released buffer
            return None
    try:
        return str(value)
    except Exception:  # a broken __str__ never breaks the caller
        return f"<unprintable {type(value).__name__}>"


def _base64_size(value: Any) -> str:
    """orjson's ``default`` while measuring: bytes take their base64 length."""
    if isinstance(value, bytes):
        return "=" * (len(value) * 4 // 3 + 4)
    raise TypeError


def _copy(value: Any, depth: int) -> tuple[Any, int]:
    """The fast copier: scalars, dicts with ``str`` keys, lists and tuples only."""
    cls = type(value)
    if cls is str:
        return value, len(value) + 2
    if cls in IMMUTABLE:
        return value, 8
    if depth > MAX_DEPTH:
        raise _Unusual
    depth += 1
    size = 2
    if cls is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Unusual
            out[key], nbytes = _copy(item, depth)
            size += nbytes + len(key) + 4
        return out, size
    if cls is list or cls is tuple:
        items = []
        for item in value:
            copy, nbytes = _copy(item, depth)
            items.append(copy)
            size += nbytes + 1
        return items, size
    raise _Unusual
