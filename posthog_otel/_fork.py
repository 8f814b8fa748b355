"""One place for fork safety: objects register a method that rebuilds their state in a
forked child (new locks, no inherited threads or queued work). Held weakly, so the
registration never keeps an object alive."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable

_resets: list[weakref.WeakMethod[Callable[[], None]]] = []


def reset_in_child(method: Callable[[], None]) -> None:
    """Call ``method`` (a bound method) in every child forked from now on."""
    global _resets
    if len(_resets) >= 64:  # drop registrations of objects that are gone
        _resets = [ref for ref in _resets if ref() is not None]
    _resets.append(weakref.WeakMethod(method))


def _after_fork_in_child() -> None:
    for ref in list(_resets):
        method = ref()
        if method is not None:
            method()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
