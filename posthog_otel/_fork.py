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
which forks wait. Better still, what a background thread needs is imported before it
starts, on the thread that creates it (``import_now``).

Locks that guard state a child keeps (the exporter's queue lock) are also taken by the
forking thread just before the fork and released just after (``hold_across_fork``), so
that no other thread is inside the critical section at the fork: the child inherits a
consistent state, not only a released lock. And a block that must not be cut in half
by a fork (creating a TLS context, a TLS handshake: OpenSSL's own locks held at a fork
stay held in the child, whose first TLS context then hangs) runs in
``no_fork_during()``: a fork waits until such blocks have ended.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "fork_safe_condition",
    "fork_safe_event",
    "fork_safe_lock",
    "fork_safe_rlock",
    "hold_across_fork",
    "import_fork_safe",
    "import_now",
    "no_fork_during",
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
# Locks the forking thread takes around a fork, and those it holds during one.
_held_across: weakref.WeakSet[Any] = weakref.WeakSet()
_held_now: list[Any] = []
# How long a fork waits for the held locks in all: they guard microsecond-long sections,
# so this only bounds the impossible case (a fork from inside one); a lock not taken in
# time is still released in the child by ``_at_fork_reinit``.
_HOLD_WAIT = 1.0
# Blocks a fork must not cut in half (``no_fork_during``): how many run, and whether a
# fork is waiting for them (then no new one starts until it is done).
_gate = threading.Condition(threading.Lock())
_gate_inside = 0
_gate_forking = False


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


def import_now(*names: str) -> None:
    """Import ``names`` on the calling thread, skipping those not installed, so that a
    background thread started later finds them loaded and imports nothing itself (a fork
    during an import on another thread leaves the child a half-imported module whose
    import lock nobody will release)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def hold_across_fork(lock: threading.Lock) -> None:
    """Have the forking thread take ``lock`` just before each fork and release it just
    after, in the parent and (re-initialised) in the child. ``lock`` must be one of
    ours (``fork_safe_lock``) and never held while waiting for another lock."""
    _held_across.add(lock)


@contextlib.contextmanager
def no_fork_during() -> Iterator[None]:
    """Run the block with no fork in the middle of it (forks wait, at most a second in
    all, for the blocks running; a block starting while a fork waits waits for it)."""
    global _gate_inside
    with _gate:
        while _gate_forking:
            _gate.wait()
        _gate_inside += 1
    try:
        yield
    finally:
        with _gate:
            _gate_inside -= 1
            _gate.notify_all()


_T = TypeVar("_T")


def _registered(obj: _T) -> _T:
    _sync_objects.add(obj)
    return obj


def _before_fork() -> None:
    global _import_guard_held, _gate_forking
    if _import_owner == threading.get_ident():
        return  # a fork from inside a guarded import (by the module imported): go ahead
    deadline = time.monotonic() + _HOLD_WAIT
    # Bounded like every wait here: the import may itself wait for a module lock that
    # this forking thread holds (a fork at import time), which would never end.
    _import_guard_held = _import_guard.acquire(timeout=_HOLD_WAIT)
    with _gate:
        _gate_forking = True
        _gate.wait_for(lambda: _gate_inside == 0, max(deadline - time.monotonic(), 0.0))
    for lock in list(_held_across):
        if lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            _held_now.append(lock)


def _after_fork_in_parent() -> None:
    global _import_guard_held, _gate_forking
    while _held_now:
        _held_now.pop().release()
    with _gate:
        _gate_forking = False
        _gate.notify_all()
    if _import_guard_held:
        _import_guard_held = False
        _import_guard.release()


def _after_fork_in_child() -> None:
    global _import_guard, _import_guard_held, _import_owner
    global _gate, _gate_inside, _gate_forking
    _import_guard, _import_guard_held, _import_owner = threading.Lock(), False, None
    _gate, _gate_inside, _gate_forking = threading.Condition(threading.Lock()), 0, False
    _held_now.clear()  # registered locks too: re-initialised (released) just below
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
