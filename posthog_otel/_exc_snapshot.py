"""An exception as plain data, taken on the caller's thread (error tracking, EEM/CEX).

A traceback keeps every frame of the failed call alive, with its locals: holding it in
the queue while the server is unreachable would pin them. So at the moment of capture
the exception is turned into ``ExcEntry`` tuples of strings and numbers (type, message,
module, and per frame the file, line, function and module name) and the traceback is
let go. Nothing here reads a source file: the flush thread does that (``_exc_event``).

The entries are the exception tree flattened depth-first, parents first (EEM-10): the
caught exception is entry 0, then what ``__cause__``, ``__context__`` (unless
suppressed) and ``ExceptionGroup.exceptions`` lead to, cycles cut, at most
``MAX_ENTRIES`` (EEM-13). Frames are outermost-first (Python's ``tb_next`` order,
CEX-05), capped per exception and per event so a recursion-depth traceback costs a
bounded walk and a bounded event.

The boundary (``Boundary``) says what the capture site knows: level, mechanism type,
handled state and ``$exception_source`` (EEM-05…09, 14); unknown stays ``None`` and is
omitted on the wire (EEM-03).
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

__all__ = [
    "LEVELS",
    "MAX_ENTRIES",
    "Boundary",
    "ExcEntry",
    "Frame",
    "dedup_key",
    "entries_bytes",
    "normalize_level",
    "snapshot_exception",
    "with_overrides",
]

MAX_ENTRIES = 50
"""Entries of ``$exception_list`` at most: the outermost plus the first 49 nested ones."""
MAX_FRAMES = 50
"""Frames kept per exception: the ``HEAD_FRAMES`` outermost and the innermost rest (a
recursion-depth traceback keeps where it started and where it failed)."""
HEAD_FRAMES = 10
MAX_EVENT_FRAMES = 250
"""Frames kept over all the entries of one event."""
MAX_VALUE_CHARS = 8192
"""Characters of an exception message kept."""
MAX_GROUP_MEMBERS = 1000
"""Members of one ``ExceptionGroup`` looked at (beyond ``MAX_ENTRIES`` none is kept)."""
MAX_NAME_CHARS = 1024
"""Characters of a file path, function or module name kept."""

LEVELS = frozenset({"fatal", "error", "warning", "log", "info", "debug"})
_LEVEL_ALIASES = {
    "fatal": "fatal",
    "critical": "fatal",
    "alert": "fatal",
    "emergency": "fatal",
    "error": "error",
    "exception": "error",  # structlog's method name for error-with-traceback
    "warning": "warning",
    "warn": "warning",
    "notice": "info",
    "info": "info",
    "trace": "debug",
    "debug": "debug",
    "log": "log",
}

# A frame: (absolute path, line number or None, function, module name or None).
Frame = tuple[str, "int | None", str, "str | None"]


class ExcEntry(NamedTuple):
    """One exception of the tree, as plain data (no reference to the exception); a
    named tuple: made once per exception on the caller's thread, so it costs little."""

    type: str
    value: str
    module: str | None
    frames: tuple[Frame, ...] | None  # None: no stack at all (the entry has no stacktrace)
    exception_id: int
    parent_id: int | None = None
    source: str | None = None  # the edge from the parent: cause, context, member
    synthetic: bool | None = None  # None: provenance unknown (omitted)
    is_group: bool = False
    handled: bool | None = None  # a nested entry's own handled state, when known


@dataclass(frozen=True, slots=True)
class Boundary:
    """What the capture site knows (EEM-14); ``None`` fields are unknown and omitted."""

    level: str | None = None
    mechanism: str | None = None  # the outermost entry's mechanism.type
    handled: bool | None = None
    source: str | None = None  # $exception_source
    synthetic: bool | None = None  # overrides the outermost entry's own when set
    extras: tuple[tuple[str, Any], ...] = ()  # JSON-safe extra mechanism fields


def normalize_level(level: object) -> str | None:
    """EEM-09: a level name (any case, with aliases) or a ``logging`` level number as
    one of ``LEVELS``; ``None`` when it is not recognized."""
    if isinstance(level, bool):
        return None
    if isinstance(level, int):
        if level >= 50:
            return "fatal"
        if level >= 40:
            return "error"
        if level >= 30:
            return "warning"
        if level >= 20:
            return "info"
        return "debug" if level > 0 else None
    if isinstance(level, str):
        return _LEVEL_ALIASES.get(level.strip().lower())
    return None


def with_overrides(
    default: Boundary, level: object = None, handled: object = None, mechanism: object = None
) -> Boundary:
    """EEM-04/15: a boundary's defaults with the caller's typed overrides, each field
    on its own: a valid override wins, an invalid one falls through to the default."""
    new_level = normalize_level(level) if level is not None else None
    new_handled = handled if isinstance(handled, bool) else None
    new_type: str | None = None
    new_synthetic: bool | None = None
    extras: list[tuple[str, Any]] = []
    if isinstance(mechanism, Mapping):
        value = mechanism.get("type")
        if isinstance(value, str) and value.strip():
            new_type = value.strip()
        value = mechanism.get("handled")
        if isinstance(value, bool):
            new_handled = value
        value = mechanism.get("synthetic")
        if isinstance(value, bool):
            new_synthetic = value
        for key, value in mechanism.items():
            if (
                isinstance(key, str)
                and key not in _MECHANISM_OWNED
                and type(value) in _JSON_SCALARS
            ):
                extras.append((key, value))
    return Boundary(
        level=new_level or default.level,
        mechanism=new_type or default.mechanism,
        handled=default.handled if new_handled is None else new_handled,
        source=default.source,
        synthetic=default.synthetic if new_synthetic is None else new_synthetic,
        extras=tuple(extras[:16]),
    )


# ``BaseExceptionGroup`` (Python 3.11+; a class nothing is an instance of before).
_GROUP: type = getattr(builtins, "BaseExceptionGroup", type("_NoGroup", (), {}))

_MECHANISM_OWNED = frozenset(
    {"type", "handled", "synthetic", "source", "exception_id", "parent_id"}
)
_JSON_SCALARS = frozenset({str, int, float, bool})


# ---------------------------------------------------------------------- snapshots


def snapshot_exception(value: object, skip_module: str = "posthog_otel") -> list[ExcEntry]:
    """The exception tree of ``value`` as entries (see the module docstring).

    ``value`` may be an exception, a ``sys.exc_info()`` tuple, or anything else: a value
    that is not an exception becomes one entry of type ``Error`` with a normalized
    message and the current stack (outside ``skip_module``) marked synthetic (CEX-02,
    CEX-08, EEM-08). Never raises for a value it is given."""
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        value = value[1]
    if not isinstance(value, BaseException):
        frames = _current_stack(skip_module)
        return [ExcEntry("Error", _normalized(value), None, frames, 0, synthetic=True)]
    if (
        value.__cause__ is None
        and (value.__context__ is None or value.__suppress_context__)
        and not isinstance(value, _GROUP)
    ):  # the common case: one exception, no tree
        tb = value.__traceback__
        return [
            ExcEntry(
                _type_name(value),
                _message(value),
                _module_of(value),
                None if tb is None else _frames(tb, [MAX_EVENT_FRAMES]),
                0,
                None,
                None,
                False,
            )
        ]
    entries: list[ExcEntry] = []
    seen: set[int] = set()
    budget = [MAX_EVENT_FRAMES]
    stack: list[tuple[BaseException, int | None, str | None]] = [(value, None, None)]
    while stack and len(entries) < MAX_ENTRIES:
        exc, parent, source = stack.pop()
        if id(exc) in seen:  # a cycle, or one exception reached twice
            continue
        seen.add(id(exc))
        eid = len(entries)
        is_group = isinstance(exc, _GROUP)
        entries.append(
            ExcEntry(
                _type_name(exc),
                _message(exc),
                _module_of(exc),
                _frames(exc.__traceback__, budget),
                eid,
                parent,
                source,
                False,  # a runtime exception: its own stack, or none (never generated)
                is_group,
            )
        )
        children: list[tuple[BaseException, int | None, str | None]] = []
        cause = exc.__cause__
        if cause is not None:
            children.append((cause, eid, "cause"))
        elif exc.__context__ is not None and not exc.__suppress_context__:
            children.append((exc.__context__, eid, "context"))
        if is_group:
            members = getattr(exc, "exceptions", ())
            for member in members[:MAX_GROUP_MEMBERS]:
                if isinstance(member, BaseException):
                    children.append((member, eid, "member"))
        stack.extend(reversed(children))  # the first child is visited first (EEM-12)
    return entries


def _type_name(exc: BaseException) -> str:
    name = type(exc).__name__
    return name[:MAX_NAME_CHARS] if isinstance(name, str) and name else "Exception"


def _module_of(exc: BaseException) -> str | None:
    module = type(exc).__module__
    if not isinstance(module, str) or not module or module == "builtins":
        return None
    return module[:MAX_NAME_CHARS]


def _message(exc: BaseException) -> str:
    """``str(exc)``, capped; an exception whose ``__str__`` raises has a placeholder."""
    try:
        text = str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def _normalized(value: object) -> str:
    """CEX-02: the message of a value that is not an exception."""
    try:
        if isinstance(value, str):
            text = value
        elif isinstance(value, Mapping):
            keys = ", ".join(sorted(str(key) for key in list(value)[:20]))
            text = f"Non-exception value captured with keys: {keys}"
        elif isinstance(value, type) and issubclass(value, BaseException):
            text = f"{value.__name__} (an exception class, not an instance)"
        else:
            text = repr(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return text[:MAX_VALUE_CHARS]


def _frames(tb: TracebackType | None, budget: list[int]) -> tuple[Frame, ...] | None:
    """The traceback's frames, outermost-first, capped (``MAX_FRAMES``, and what is left
    of the event's ``budget``); ``None`` for an exception never raised. The names are
    the code objects' own strings (no copy); the flush thread caps their length."""
    if tb is None:
        return None
    limit = min(MAX_FRAMES, budget[0])
    frames: list[Frame] = []
    append = frames.append
    node: TracebackType | None = tb
    while node is not None:
        frame = node.tb_frame
        code = frame.f_code
        append((code.co_filename, node.tb_lineno, code.co_name, frame.f_globals.get("__name__")))
        node = node.tb_next
    if len(frames) > limit:  # a deep stack: where it started and where it failed
        head = min(HEAD_FRAMES, limit)
        frames = (
            frames[:head] + frames[len(frames) - (limit - head) :]
            if limit > head
            else frames[:head]
        )
    budget[0] -= len(frames)
    return tuple(frames)


def _current_stack(skip_module: str) -> tuple[Frame, ...]:
    """The caller's stack (our own frames left out), outermost-first: the synthetic
    stack of a value that is not an exception (EEM-08)."""
    frames: list[Frame] = []
    frame = sys._getframe(1)
    while frame is not None and len(frames) < MAX_FRAMES:
        module = frame.f_globals.get("__name__")
        if not (
            isinstance(module, str)
            and (module == skip_module or module.startswith(skip_module + "."))
        ):
            code = frame.f_code
            frames.append(
                (
                    code.co_filename[:MAX_NAME_CHARS],
                    frame.f_lineno,
                    code.co_name[:MAX_NAME_CHARS],
                    module if isinstance(module, str) else None,
                )
            )
        frame = frame.f_back  # type: ignore[assignment]
    frames.reverse()
    return tuple(frames)


# ---------------------------------------------------------------------- measures


def entries_bytes(entries: list[ExcEntry]) -> int:
    """An estimate of what the entries keep alive in the queue (``max_queue_bytes``):
    their messages and a fixed share per entry and frame (the frames' names are the
    code objects' own strings)."""
    size = 0
    for entry in entries:
        size += 128 + len(entry.value) + 64 * len(entry.frames or ())
    return size


def dedup_key(distinct_id: str, entries: list[ExcEntry]) -> tuple[Any, ...]:
    """What makes two captures "the same exception" for storm protection: the person,
    each entry's type and message, and the innermost frame of each stack, its crash
    site (the middleware sees a traceback that stops at its own frame, the request
    span's goes further out: the same failure has the same crash sites)."""
    if len(entries) == 1:  # the common case, one flat tuple
        entry = entries[0]
        crash = entry.frames[-1] if entry.frames else None
        if crash is None:
            return (distinct_id, entry.type, entry.value)
        return (distinct_id, entry.type, entry.value, crash[0], crash[1])
    key: list[Any] = [distinct_id]
    for entry in entries:
        frames = entry.frames
        crash = frames[-1] if frames else None
        key.append((entry.type, entry.value, None if crash is None else (crash[0], crash[1])))
    return tuple(key)
