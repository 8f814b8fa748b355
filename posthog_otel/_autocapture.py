"""Opt-in autocapture of uncaught exceptions (``Client(enable_exception_autocapture=True)``).

The first such client chains ``sys.excepthook`` and ``threading.excepthook``; every
uncaught exception is sent to each registered client, then handed to the hook that was
there before (the traceback is still printed). ``capture_asyncio_exceptions(loop)``
does the same for an asyncio loop's exception handler (exceptions never retrieved from
a task, errors in callbacks). When the last registered client closes, the previous
hooks are put back (a hook someone installed on top of ours is left alone: ours then
only passes on).

Boundaries (EEM-14): ``sys.excepthook`` ends the process: ``fatal``, and the clients
are flushed before it goes on; a thread's or the loop's uncaught exception does not:
``error``. All ``handled: false``, mechanism ``onuncaughtexception``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._exc_intake import ExceptionIntake
from ._exc_snapshot import Boundary
from ._fork import fork_safe_lock
from ._log import logger

__all__ = ["capture_asyncio_exceptions", "register", "unregister"]

SYS_HOOK = Boundary("fatal", "onuncaughtexception", False, "python.sys_excepthook")
THREAD_HOOK = Boundary("error", "onuncaughtexception", False, "python.threading_excepthook")
ASYNCIO = Boundary("error", "onuncaughtexception", False, "python.asyncio")

_lock = fork_safe_lock()
# The registered clients' intakes, with how to flush each (the process may end next).
_registered: list[tuple[ExceptionIntake, Callable[[], object]]] = []
_previous_sys: Callable[..., Any] | None = None
_previous_threading: Callable[..., Any] | None = None
# Loops given a handler: (loop, our handler, the previous one), to restore them.
_loops: list[tuple[Any, Callable[..., Any], Callable[..., Any] | None]] = []


def register(intake: ExceptionIntake, flush: Callable[[], object]) -> None:
    """Send uncaught exceptions to ``intake``; the hooks are installed with the first."""
    global _previous_sys, _previous_threading
    with _lock:
        if any(item[0] is intake for item in _registered):
            return
        _registered.append((intake, flush))
        if len(_registered) == 1:
            if sys.excepthook is not _sys_hook:
                _previous_sys = sys.excepthook
                sys.excepthook = _sys_hook
            if threading.excepthook is not _thread_hook:
                _previous_threading = threading.excepthook
                threading.excepthook = _thread_hook


def unregister(intake: ExceptionIntake) -> None:
    """Stop sending to ``intake``; with the last one gone, restore the previous hooks."""
    global _previous_sys, _previous_threading
    with _lock:
        _registered[:] = [item for item in _registered if item[0] is not intake]
        if _registered:
            return
        if sys.excepthook is _sys_hook and _previous_sys is not None:
            sys.excepthook, _previous_sys = _previous_sys, None
        if threading.excepthook is _thread_hook and _previous_threading is not None:
            threading.excepthook, _previous_threading = _previous_threading, None
        for loop, ours, previous in _loops:
            try:
                if loop.get_exception_handler() is ours:
                    loop.set_exception_handler(previous)
            except Exception:  # a closed loop
                pass
        _loops.clear()


def _send(value: object, boundary: Boundary, properties: dict[str, Any], flush: bool) -> None:
    """``value`` to every registered client (flushed when the process is ending)."""
    with _lock:
        targets = list(_registered)
    for intake, flush_client in targets:
        try:
            intake.send(value, boundary, properties=properties)
            if flush:
                flush_client()
        except Exception:
            logger.debug("could not capture an uncaught exception", exc_info=True)


def _sys_hook(
    exc_type: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if not issubclass(exc_type, KeyboardInterrupt):
        _send(value, SYS_HOOK, {}, flush=True)
    previous = _previous_sys or sys.__excepthook__
    previous(exc_type, value, tb)


def _thread_hook(args: Any) -> None:
    value = args.exc_value
    if value is not None and not isinstance(value, SystemExit):
        thread = args.thread
        properties = {"$thread_name": thread.name} if thread is not None else {}
        _send(value, THREAD_HOOK, properties, flush=False)
    previous = _previous_threading or threading.__excepthook__
    previous(args)


def capture_asyncio_exceptions(loop: Any = None) -> None:
    """Send the exceptions an asyncio loop reports to its exception handler (a task's
    exception never retrieved, an error in a callback) to every client created with
    ``enable_exception_autocapture=True``, then hand them to the handler that was set
    (or the loop's default one). ``loop``: the running loop when ``None``. Undone when
    the last such client closes."""
    if loop is None:
        import asyncio

        loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(the_loop: Any, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            message = context.get("message")
            properties = {"$asyncio_message": message} if isinstance(message, str) else {}
            _send(exc, ASYNCIO, properties, flush=False)
        if previous is not None:
            previous(the_loop, context)
        else:
            the_loop.default_exception_handler(context)

    with _lock:
        loop.set_exception_handler(handler)
        _loops.append((loop, handler, previous))
