"""Flushing when a process ends without running ``atexit``.

The client's exit hook (``atexit``) does not run in two common endings, and whatever
is still queued would be lost:

* **SIGTERM with the default disposition** (a container stop, a supervisor, ``kill``):
  the process dies of the signal. When a client's flush thread starts on the main thread
  and SIGTERM still has the default disposition, ``prepare_exit`` installs a handler
  that flushes every open client (within ``shutdown_timeout``), then restores the
  default and raises the signal again, so the process still dies of SIGTERM, as it
  would have. A handler someone else installed (gunicorn's, uvicorn's, Celery's, an
  application's, ``SIG_IGN``) is never replaced: those end the process through
  ``sys.exit`` (atexit runs) or restore what they found, and a framework that saved
  ours calls it when it re-raises the signal (uvicorn does, after its graceful
  shutdown). Opt out with ``Client(flush_on_sigterm=False)`` or
  ``POSTHOG_FLUSH_ON_SIGTERM=0``.
* **multiprocessing children** end with ``os._exit`` after running the finalizers of
  ``multiprocessing.util``: in a child process, the first flush thread registers one
  that flushes every open client.

The flush runs on a helper thread, and the handler returns at once: it interrupts the
main thread anywhere, possibly inside one of our critical sections, where flushing on
the main thread (or waiting there for a helper) would wait for a lock that thread holds.
So the application runs on while the flush lasts (at most ``shutdown_timeout``); then
the helper sends SIGTERM again, and the handler, called a second time, restores the
default and raises it: the process dies of SIGTERM. When a handler installed after ours
calls ours (to end the process as the default would), the default is restored at once,
so that the signal sent again does not run that handler a second time.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = [
    "ENV_FLUSH_ON_SIGTERM",
    "block_termination_signals",
    "flush_on_sigterm_default",
    "prepare_exit",
]

ENV_FLUSH_ON_SIGTERM = "POSTHOG_FLUSH_ON_SIGTERM"

_flush: Callable[[], object] | None = None
_handling = False
_finalizer_pid: int | None = None  # the process that registered the child finalizer


def flush_on_sigterm_default() -> bool:
    """``POSTHOG_FLUSH_ON_SIGTERM`` as a boolean (default: on)."""
    value = os.environ.get(ENV_FLUSH_ON_SIGTERM, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def block_termination_signals() -> None:
    """Called first thing on each of our threads: SIGTERM and SIGINT are delivered to
    some other thread, normally the main one. Python runs handlers on the main thread
    only, and a signal that lands on another thread does not interrupt the main one
    where it waits (a multiprocessing worker waiting for its next task would never run
    the handler, nor die as with the default disposition)."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    except (AttributeError, ValueError, OSError):  # not on this platform
        pass


def prepare_exit(flush: Callable[[], object], *, sigterm: bool) -> None:
    """Called when a client's flush thread starts (under its queue lock: no logging, no
    blocking): make sure ``flush`` runs however this process ends."""
    global _flush
    _flush = flush
    if sigterm:
        _install_sigterm_handler()
    _register_child_finalizer(flush)


def _install_sigterm_handler() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal.signal works on the main thread only
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # no SIGTERM here, or not allowed
        pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Flush every open client on a helper thread, then die of the signal as the default
    would have: the helper sends the signal again once the flush is done, and that
    second delivery (or a second SIGTERM from outside) ends the process at once."""
    global _handling
    flush = _flush
    if _handling or flush is None:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        return
    _handling = True
    main = threading.get_ident()  # handlers run on the main thread
    _hand_on_to_default(signum)

    def run() -> None:
        block_termination_signals()
        try:
            flush()  # bounded by each client's shutdown_timeout
        except BaseException:
            pass
        finally:  # to the main thread itself, so that it wakes up wherever it waits
            try:
                signal.pthread_kill(main, signum)
            except (AttributeError, OSError):
                os.kill(os.getpid(), signum)

    try:
        # ``_thread``, not ``threading``: the main thread may have been interrupted
        # inside ``threading``'s own bookkeeping lock.
        _thread.start_new_thread(run, ())
    except Exception:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def _hand_on_to_default(signum: int) -> None:
    """When ours is no longer the installed handler, a handler installed after ours
    called it to end the process as the default would (the usual chaining idiom): the
    signal the helper sends again must end the process, not run that handler again."""
    try:
        if signal.getsignal(signum) is not _on_sigterm:
            signal.signal(signum, signal.SIG_DFL)
    except (ValueError, OSError):  # called by hand off the main thread: leave it
        pass


def _register_child_finalizer(flush: Callable[[], object]) -> None:
    """In a ``multiprocessing`` child (which ends with ``os._exit``, skipping atexit),
    flush from ``multiprocessing.util``'s exit finalizers, once per process."""
    global _finalizer_pid
    pid = os.getpid()
    if _finalizer_pid == pid:
        return
    process: Any = sys.modules.get("multiprocessing.process")
    util: Any = sys.modules.get("multiprocessing.util")
    if process is None or util is None or process.parent_process() is None:
        return  # not a multiprocessing child: atexit runs
    _finalizer_pid = pid
    # Negative priority: after every finalizer of priority >= 0, which may still log.
    util.Finalize(None, flush, exitpriority=-100)
