"""Python traceback *text* as exception entries: for exceptions that reach us already
rendered, such as an OpenTelemetry span's ``exception.stacktrace`` attribute or the
``exception`` key structlog's ``format_exc_info`` leaves (CEX-08: a stack string is a
real stack, used as is, never replaced by a synthesized one).

``traceback.format_exception`` prints the root cause first and the caught exception
last, sections joined by "The above exception was the direct cause of the following
exception:" (``__cause__``) or "During handling of the above exception, another
exception occurred:" (``__context__``); the entries are built outermost-first with that
linkage. Frames are the ``File "...", line N, in f`` lines, in the printed order
(outermost-first). Text that is not a traceback gives no entries: the caller then sends
the entry it knows without frames.
"""

from __future__ import annotations

import re
from typing import Any

from ._exc_snapshot import (
    MAX_ENTRIES,
    MAX_FRAMES,
    MAX_NAME_CHARS,
    MAX_VALUE_CHARS,
    ExcEntry,
    Frame,
)

__all__ = ["MAX_TEXT_CHARS", "parse_rendered", "parse_traceback", "split_type"]

MAX_TEXT_CHARS = 512 * 1024
"""Characters of a traceback text looked at."""

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_TYPE = re.compile(r"^[A-Za-z_][\w.]*$")
_HEADER = "Traceback (most recent call last):"
_SEPARATORS = {
    "The above exception was the direct cause of the following exception:": "cause",
    "During handling of the above exception, another exception occurred:": "context",
}


def split_type(qualified: str) -> tuple[str, str | None]:
    """``"app.errors.PaymentError"`` → ``("PaymentError", "app.errors")``."""
    module, _, name = qualified.rpartition(".")
    return (name or qualified)[:MAX_NAME_CHARS], (module[:MAX_NAME_CHARS] or None)


def parse_traceback(text: str) -> list[ExcEntry]:
    """The entries of a rendered traceback (see the module docstring); ``[]`` when
    ``text`` holds no exception line."""
    sections: list[tuple[list[Frame], list[str], bool]] = []  # frames, exception lines
    edges: list[str] = []  # edges[i]: how section i+1 relates to section i
    frames: list[Frame] = []
    lines: list[str] = []
    has_header = False
    for raw in text[:MAX_TEXT_CHARS].splitlines():
        line = raw.rstrip()
        edge = _SEPARATORS.get(line.strip())
        if edge is not None:
            if lines:
                sections.append((frames, lines, has_header))
                edges.append(edge)
            frames, lines, has_header = [], [], False
            continue
        if line == _HEADER:
            has_header = True
            continue
        match = _FRAME.match(line)
        if match is not None and not lines:
            frames.append(
                (
                    match["file"][:MAX_NAME_CHARS],
                    int(match["line"]),
                    (match["func"] or "<module>")[:MAX_NAME_CHARS],
                    None,
                )
            )
            continue
        if not line or (line[:1].isspace() and not lines):
            continue  # a source line or caret marker under a frame
        lines.append(line)
    if lines:
        sections.append((frames, lines, has_header))
    entries: list[ExcEntry] = []
    count = len(sections)
    for index in range(min(count, MAX_ENTRIES)):
        frames, lines, header = sections[count - 1 - index]
        head, sep, message = lines[0].partition(": ")
        if not _TYPE.match(head):
            if index == 0:
                return []  # not a traceback after all
            break
        name, module = split_type(head)
        value = "\n".join([message, *lines[1:]]) if sep else "\n".join(lines[1:])
        entries.append(
            ExcEntry(
                name,
                value[:MAX_VALUE_CHARS],
                module,
                _capped(frames) if header or frames else None,
                index,
                index - 1 if index else None,
                edges[count - 1 - index] if index else None,
                False,
            )
        )
    return entries


def _capped(frames: list[Frame]) -> tuple[Frame, ...]:
    if len(frames) <= MAX_FRAMES:
        return tuple(frames)
    head = MAX_FRAMES // 5
    return (*frames[:head], *frames[len(frames) - (MAX_FRAMES - head) :])


def parse_rendered(value: object) -> list[ExcEntry]:
    """structlog's rendered exception (the ``exception`` key): the text of
    ``format_exc_info``, or the list of stacks of ``dict_tracebacks`` (outermost-first,
    each one's ``is_cause`` telling its edge to the one before); ``[]`` otherwise."""
    if isinstance(value, str):
        return parse_traceback(value)
    if not isinstance(value, list):
        return []
    entries: list[ExcEntry] = []
    for index, stack in enumerate(value[:MAX_ENTRIES]):
        if not isinstance(stack, dict) or not isinstance(stack.get("exc_type"), str):
            break
        name, module = split_type(stack["exc_type"])
        raw_frames: Any = stack.get("frames")
        frames = (
            _capped([_dict_frame(f) for f in raw_frames if isinstance(f, dict)])
            if isinstance(raw_frames, list)
            else None
        )
        entries.append(
            ExcEntry(
                name,
                str(stack.get("exc_value", ""))[:MAX_VALUE_CHARS],
                module,
                frames,
                index,
                index - 1 if index else None,
                ("cause" if stack.get("is_cause") else "context") if index else None,
                False,
                bool(stack.get("is_group")),
            )
        )
    return entries


def _dict_frame(frame: dict[str, Any]) -> Frame:
    lineno = frame.get("lineno")
    return (
        str(frame.get("filename", "<unknown>"))[:MAX_NAME_CHARS],
        lineno if isinstance(lineno, int) else None,
        str(frame.get("name", "<unknown>"))[:MAX_NAME_CHARS],
        None,
    )
