"""The ``before_send`` chain: the application's last look at an event before it is
queued. Fail closed: a hook that raises or returns something other than a dict drops
the event (counted); what the chain hands back is checked again, since a hook may have
removed the name, the distinct id or the uuid. An event a hook itself captures (on the
hook's thread) is not run through the hooks again: a hook that captures would otherwise
recurse until Python's recursion limit, one event per level."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._ids import as_id, normalize_uuid, uuid7
from ._options import BeforeSend, Event
from ._serialize import format_timestamp
from ._stats import StatsRecorder

T = TypeVar("T")
R = TypeVar("R")


class HookGuard(threading.local):
    """Whether this thread is running a lane's ``before_send`` hooks: what a hook itself
    captures, logs or ends is not run through the hooks again (a hook that captures would
    otherwise recurse to Python's recursion limit, or without end)."""

    running = False

    def call(self, hooks: Callable[[T], R], value: T, inside: Callable[[T], R]) -> R:
        """``hooks(value)``, or ``inside(value)`` when called from inside a hook."""
        if self.running:
            return inside(value)
        self.running = True
        try:
            return hooks(value)
        finally:
            self.running = False


class BeforeSendChain:
    """The configured hooks, run in order; falsy when there are none (then callers skip
    it without a call)."""

    __slots__ = ("_guard", "_hooks", "_stats")

    def __init__(self, hooks: tuple[BeforeSend, ...], stats: StatsRecorder) -> None:
        self._hooks = hooks
        self._stats = stats
        self._guard = HookGuard()

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def run(self, event: Event) -> Event | None:
        """The event as the hooks leave it, or ``None`` (dropped, counted). Runs on the
        thread that builds the event: the caller's, or the flush thread for a deferred
        one. The hooks see the timestamp formatted as it will be sent."""
        event["timestamp"] = format_timestamp(event["timestamp"])[0]
        return self._guard.call(self._run_hooks, event, self._checked)

    def _run_hooks(self, event: Event) -> Event | None:
        name = event.get("event")
        for hook in self._hooks:
            try:
                result: Any = hook(event)
            except Exception as exc:
                self._drop(
                    "before_send_error",
                    f": before_send hook {_hook_name(hook)} raised {type(exc).__name__} "
                    f"on {name!r}; event discarded",
                )
                return None
            if result is None:
                self._drop("before_send", f": before_send returned None for {name!r}")
                return None
            if not isinstance(result, dict):
                self._drop(
                    "before_send_error",
                    f": before_send hook {_hook_name(hook)} returned "
                    f"{type(result).__name__}, not a dict",
                )
                return None
            event = result
        return self._checked(event)

    def _checked(self, event: Event) -> Event | None:
        """``event`` with a valid name, distinct id, properties and uuid, or ``None``."""
        if not isinstance(event.get("event"), str) or not event.get("event"):
            self._drop("invalid", ": before_send left the event without a name")
            return None
        distinct_id = as_id(event.get("distinct_id"))
        if not distinct_id:
            self._drop("invalid", ": before_send left the event without a distinct_id")
            return None
        event["distinct_id"] = distinct_id
        if not isinstance(event.get("properties"), dict):
            event["properties"] = {}
        given = event.get("uuid")
        checked = normalize_uuid(given)
        if checked is None:
            self._stats.correct(
                "invalid_uuid", f"uuid {given!r} is not a UUID; replaced by a new one"
            )
            checked = uuid7()
        event["uuid"] = checked
        return event

    def _drop(self, reason: str, detail: str) -> None:
        self._stats.drop(reason, 1, detail)
        return None


def _hook_name(hook: object) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__name__
