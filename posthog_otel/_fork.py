"""One place for fork safety.

A thread of the parent may hold any of our locks at the moment another thread forks;
in the child that thread does not exist, so the lock would stay held for ever and the
first flag read or capture would hang. Hence two rules, both enforced by a test that
scans the package:

* Every long-lived lock, condition and event is made here (``fork_safe_lock()``,
  ``fork_safe_rlock()``, ``fork_safe_condition()``, ``fork_safe_event()``). They are the
  plain ``threading`` objects (no wrapper, nothing added to an acquire), remembered
  weakly and re-initialised in the child (released, no waiters; an event keeps its
  state), as the standard library does for its own locks.
* Objects with more state than locks (threads that did not survive, queued work)
  register a method that rebuilds it in the child: ``reset_in_child``.

And a background thread must not import a module where the parent may fork (the
child would find the module half imported and its import lock held by a thread that
does not exist): such a rare lazy import goes through ``import_fork_safe``, during
which forks wait.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "fork_safe_condition",
    "fork_safe_event",
    "fork_safe_lock",
    "fork_safe_rlock",
    "import_fork_safe",
    "reset_in_child",
]

# Objects to rebuild in a child, each with the functions (unbound) that do it. Held
# weakly; one dict operation per registration, atomic under the GIL: registrations from
# several threads at once are all kept (a pruned copy of a list used to lose some).
_resets: weakref.WeakKeyDictionary[Any, list[Callable[[Any], None]]] = weakref.WeakKeyDictionary()
# Locks, conditions and events to re-initialise in a child (``_at_fork_reinit``).
_sync_objects: weakref.WeakSet[Any] = weakref.WeakSet()
# Held by a background thread while it imports, and by a forking thread around the fork.
_import_guard = threading.Lock()
_import_guard_held = False
_import_owner: int | None = None  # the thread importing under the guard


def reset_in_child(method: Callable[[], None]) -> None:
    """Call ``method`` (a bound method; its object is held weakly) in every child forked
    from now on."""
    _resets.setdefault(method.__self__, []).append(method.__func__)  # type: ignore[attr-defined]


def fork_safe_lock() -> threading.Lock:
    """A ``threading.Lock`` that a forked child gets back released."""
    return _registered(threading.Lock())


def fork_safe_rlock() -> threading.RLock:
    """A ``threading.RLock`` that a forked child gets back released."""
    return _registered(threading.RLock())


def fork_safe_condition(
    lock: threading.Lock | threading.RLock | None = None,
) -> threading.Condition:
    """A ``threading.Condition`` (on ``lock``, which should itself be fork safe) that a
    forked child gets back released and without waiters."""
    return _registered(threading.Condition(lock))


def fork_safe_event() -> threading.Event:
    """A ``threading.Event`` whose lock a forked child gets back released (the flag
    keeps its value)."""
    return _registered(threading.Event())


def import_fork_safe(name: str) -> ModuleType:
    """Import ``name`` from a background thread: a fork waits until the import is done."""
    global _import_owner
    with _import_guard:
        _import_owner = threading.get_ident()
        try:
            return importlib.import_module(name)
        finally:
            _import_owner = None


_T = TypeVar("_T")


def _registered(obj: _T) -> _T:
    _sync_objects.add(obj)
    return obj


def _before_fork() -> None:
    global _import_guard_held
    if _import_owner == threading.get_ident():
        return  # a fork from inside a guarded import (by the module imported): go ahead
    _import_guard_held = _import_guard.acquire()


def _after_fork_in_parent() -> None:
    global _import_guard_held
    if _import_guard_held:
        _import_guard_held = False
        _import_guard.release()


def _after_fork_in_child() -> None:
    global _import_guard, _import_guard_held, _import_owner
    _import_guard, _import_guard_held, _import_owner = threading.Lock(), False, None
    for obj in list(_sync_objects):
        obj._at_fork_reinit()  # CPython's own (3.9+), as ``threading`` and ``logging`` use
    for obj, functions in list(_resets.items()):
        for function in functions:
            try:
                function(obj)
            except Exception:  # one object's failure must not leave the others inherited
                logging.getLogger("posthog_otel").exception("fork reset failed")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
