"""The ``$exception`` properties, built on the flush thread from the plain-data entries
taken on the caller's thread (``_exc_snapshot``): EEM-01…20 and CEX-05…07.

Source context (CEX-07) is read here, not on the caller's thread: 5 lines each side,
ascending, lines capped at ``MAX_LINE_CHARS``, all three fields left out when the file
cannot be read; the crash-site frames get it first and the event's context stops at
``MAX_CONTEXT_BYTES``. ``in_app`` is false for the standard library, site-packages and
dist-packages and frozen modules, true otherwise, with ``in_app_include`` /
``in_app_exclude`` module prefixes first. Whatever the input, one event stays under
``MAX_EXCEPTION_BYTES`` (``fit``): context goes first, then outer frames, then long
messages.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from ._exc_snapshot import LEVELS, MAX_NAME_CHARS, Boundary, ExcEntry, Frame, normalize_level
from ._fork import fork_safe_lock

__all__ = [
    "MAX_EXCEPTION_BYTES",
    "RESERVED",
    "SDK_OWNED",
    "ExceptionsConfig",
    "SourceLines",
    "exception_properties",
]

CONTEXT_LINES = 5
MAX_LINE_CHARS = 1024
MAX_CONTEXT_BYTES = 64 * 1024
MAX_EXCEPTION_BYTES = 512 * 1024
"""An ``$exception`` event's properties stay under this (PostHog refuses ~900 KiB)."""
MAX_SOURCE_FILE_BYTES = 4 * 1024 * 1024
_CACHED_FILES = 64

# EEM-20: what the SDK produces, and what PostHog's processor owns; a caller's property
# bag never sets either (``$exception_fingerprint`` is the documented exception, EEM-16).
SDK_OWNED = frozenset(
    {
        "$exception_list",
        "$exception_level",
        "$exception_source",
        "$debug_images",
        "$exception_type",
        "$exception_message",
    }
)
RESERVED = SDK_OWNED | frozenset(
    {
        "$exception_types",
        "$exception_values",
        "$exception_sources",
        "$exception_functions",
        "$exception_fingerprint_version",
        "$exception_fingerprint_record",
        "$exception_issue_id",
        "$exception_release",
        "$cymbal_errors",
        "$exception_handled",
    }
)


@dataclass(frozen=True)
class ExceptionsConfig:
    """The client's error-tracking options (``client.config.exceptions``)."""

    autocapture: bool = False
    in_app_include: tuple[str, ...] = ()
    in_app_exclude: tuple[str, ...] = ()


class SourceLines:
    """Source files' lines for context, read on the flush thread, a bounded LRU keyed
    by path and (size, mtime) so an edited file is read again."""

    def __init__(self) -> None:
        self._files: OrderedDict[str, tuple[tuple[int, int], list[str] | None]] = OrderedDict()
        # The flush thread is the one reader, but in sync_mode events are built on the
        # callers' threads.
        self._lock = fork_safe_lock()

    def lines(self, path: str) -> list[str] | None:
        if not path or path[:1] == "<":
            return None
        with self._lock:
            return self._lines(path)

    def _lines(self, path: str) -> list[str] | None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self._files.get(path)
        if cached is not None and cached[0] == stamp:
            self._files.move_to_end(path)
            return cached[1]
        lines: list[str] | None = None
        if st.st_size <= MAX_SOURCE_FILE_BYTES:
            try:
                with open(path, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
            except (OSError, ValueError):
                lines = None
        self._files[path] = (stamp, lines)
        if len(self._files) > _CACHED_FILES:
            self._files.popitem(last=False)
        return lines


def exception_properties(
    entries: list[ExcEntry],
    boundary: Boundary | None,
    config: ExceptionsConfig | None = None,
    source: SourceLines | None = None,
) -> dict[str, Any]:
    """The SDK-owned ``$exception`` properties of ``entries`` under ``boundary``: a pure
    builder but for the source files it reads through ``source`` (``None``: no
    context). A ``None`` boundary is a context-free producer: no level, source or
    mechanism type and handled state (EEM-14's last row); every boundary field is
    validated on its own (EEM-04)."""
    b = boundary or Boundary()
    rules = config or ExceptionsConfig()
    mech_type = b.mechanism if isinstance(b.mechanism, str) and b.mechanism else None
    handled = b.handled if isinstance(b.handled, bool) else None
    exc_list: list[dict[str, Any]] = []
    for entry in entries:
        outer = entry.exception_id == 0
        mechanism: dict[str, Any] = {}
        if outer:
            mechanism.update(b.extras)
            if mech_type is not None:
                mechanism["type"] = mech_type
            if handled is not None:
                mechanism["handled"] = handled
        else:
            mechanism["type"] = "chained"
            if entry.source:
                mechanism["source"] = entry.source
            if isinstance(entry.handled, bool):  # a nested entry's own, when known
                mechanism["handled"] = entry.handled
        synthetic = b.synthetic if outer and isinstance(b.synthetic, bool) else entry.synthetic
        if synthetic is not None:
            mechanism["synthetic"] = synthetic
        if entry.is_group:
            mechanism["is_exception_group"] = True
        mechanism["exception_id"] = entry.exception_id
        if entry.parent_id is not None:
            mechanism["parent_id"] = entry.parent_id
        item: dict[str, Any] = {
            "type": entry.type or "Exception",
            "value": entry.value,
            "mechanism": mechanism,
        }
        if entry.module:
            item["module"] = entry.module
        if entry.frames is not None:
            item["stacktrace"] = {
                "type": "raw",
                "frames": [_frame(frame, rules) for frame in entry.frames],
            }
        exc_list.append(item)
    if source is not None:
        _add_context(exc_list, source)
    properties: dict[str, Any] = {"$exception_list": exc_list}
    level = normalize_level(b.level) if b.level is not None else None
    if level in LEVELS:
        properties["$exception_level"] = level
    if isinstance(b.source, str) and b.source:
        properties["$exception_source"] = b.source
    if exc_list:
        properties["$exception_type"] = exc_list[0]["type"]
        properties["$exception_message"] = exc_list[0]["value"]
    fit(properties)
    return properties


def _frame(frame: Frame, rules: ExceptionsConfig) -> dict[str, Any]:
    path, lineno, function, module = frame
    path, function = path[:MAX_NAME_CHARS], function[:MAX_NAME_CHARS]
    module = module[:MAX_NAME_CHARS] if isinstance(module, str) else None
    out: dict[str, Any] = {
        "platform": "python",
        "filename": _relative(path),
        "abs_path": path,
        "function": function,
    }
    if module:
        out["module"] = module
    if lineno is not None:
        out["lineno"] = lineno
    out["in_app"] = _in_app(path, module, rules)
    return out


def _add_context(exc_list: list[dict[str, Any]], source: SourceLines) -> None:
    """CEX-07 context on the frames, crash sites first, within ``MAX_CONTEXT_BYTES``."""
    budget = MAX_CONTEXT_BYTES
    for item in exc_list:
        for frame in reversed(item.get("stacktrace", {}).get("frames", ())):
            if budget <= 0:
                return
            lineno = frame.get("lineno")
            if not lineno:
                continue
            lines = source.lines(frame["abs_path"])
            if lines is None or not 0 < lineno <= len(lines):
                continue
            start = max(lineno - 1 - CONTEXT_LINES, 0)
            frame["pre_context"] = [_line(x) for x in lines[start : lineno - 1]]
            frame["context_line"] = _line(lines[lineno - 1])
            frame["post_context"] = [_line(x) for x in lines[lineno : lineno + CONTEXT_LINES]]
            budget -= sum(len(x) + 4 for x in frame["pre_context"]) + len(frame["context_line"])
            budget -= sum(len(x) + 4 for x in frame["post_context"])


def _line(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS]


def fit(properties: dict[str, Any]) -> None:
    """Keep the properties under ``MAX_EXCEPTION_BYTES``: drop source context, then all
    but the innermost 10 frames of each stack, then cut messages to 1 KiB."""
    for step in (_drop_context, _drop_outer_frames, _cut_values):
        if _size(properties) <= MAX_EXCEPTION_BYTES:
            return
        step(properties["$exception_list"])
    if exc_list := properties["$exception_list"]:
        properties["$exception_message"] = exc_list[0]["value"]


def _size(properties: dict[str, Any]) -> int:
    try:
        return len(orjson.dumps(properties))
    except (TypeError, orjson.JSONEncodeError):
        return MAX_EXCEPTION_BYTES + 1  # a surrogate: strip what can be stripped


def _drop_context(exc_list: list[dict[str, Any]]) -> None:
    for item in exc_list:
        for frame in item.get("stacktrace", {}).get("frames", ()):
            for key in ("pre_context", "context_line", "post_context"):
                frame.pop(key, None)


def _drop_outer_frames(exc_list: list[dict[str, Any]]) -> None:
    for item in exc_list:
        stacktrace = item.get("stacktrace")
        if stacktrace is not None:
            stacktrace["frames"] = stacktrace["frames"][-10:]


def _cut_values(exc_list: list[dict[str, Any]]) -> None:
    for item in exc_list:
        item["value"] = item["value"][:1024]
        item["type"] = item["type"][:256]


# ---------------------------------------------------------------------- paths

_relative_cache: dict[str, str] = {}


def _relative(path: str) -> str:
    """The path relative to the longest ``sys.path`` entry that holds it (what Python
    would import it as), else the path as given."""
    cached = _relative_cache.get(path)
    if cached is not None:
        return cached
    best = ""
    if os.path.isabs(path):
        for entry in sys.path:
            if not isinstance(entry, str) or not entry:
                continue
            base = entry.rstrip(os.sep) + os.sep
            if path.startswith(base) and len(base) > len(best):
                best = base
    relative = path[len(best) :] if best else path
    if len(_relative_cache) < 4096:
        _relative_cache[path] = relative
    return relative[:MAX_NAME_CHARS]


def _stdlib_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = {
        os.path.realpath(paths[key]) + os.sep for key in ("stdlib", "platstdlib") if paths.get(key)
    }
    found |= {p + os.sep for p in (paths.get("stdlib"), paths.get("platstdlib")) if p}
    return tuple(sorted(found))


_STDLIB = _stdlib_prefixes()
_PACKAGES = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


def _matches(module: str | None, prefixes: tuple[str, ...]) -> bool:
    return module is not None and any(
        module == prefix or module.startswith(prefix + ".") for prefix in prefixes
    )


def _in_app(path: str, module: str | None, rules: ExceptionsConfig) -> bool:
    if rules.in_app_include and _matches(module, rules.in_app_include):
        return True
    if rules.in_app_exclude and _matches(module, rules.in_app_exclude):
        return False
    if path[:1] == "<":
        return False
    if any(marker in path for marker in _PACKAGES):
        return False
    return not path.startswith(_STDLIB)
