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

The flush runs on a helper thread that the handler waits for (at most the largest
``shutdown_timeout`` plus a margin): the handler interrupts the main thread anywhere,
possibly inside one of our critical sections, where flushing on the main thread itself
would wait for a lock that thread holds.
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

__all__ = ["ENV_FLUSH_ON_SIGTERM", "flush_on_sigterm_default", "prepare_exit"]

ENV_FLUSH_ON_SIGTERM = "POSTHOG_FLUSH_ON_SIGTERM"
_MARGIN = 1.0  # seconds the handler waits beyond the largest shutdown_timeout

_flush: Callable[[], object] | None = None
_wait = 0.0
_handling = False
_finalizer_pid: int | None = None  # the process that registered the child finalizer


def flush_on_sigterm_default() -> bool:
    """``POSTHOG_FLUSH_ON_SIGTERM`` as a boolean (default: on)."""
    value = os.environ.get(ENV_FLUSH_ON_SIGTERM, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def prepare_exit(flush: Callable[[], object], timeout: float, *, sigterm: bool) -> None:
    """Called when a client's flush thread starts (under its queue lock: no logging, no
    blocking): make sure ``flush`` runs however this process ends."""
    global _flush, _wait
    _flush = flush
    _wait = max(_wait, timeout + _MARGIN)
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
    """Flush every open client, then die of the signal as the default would have."""
    global _handling
    flush = _flush
    if not _handling and flush is not None:  # a second SIGTERM ends the process at once
        _handling = True
        done = _thread.allocate_lock()  # a fresh lock: nobody else can hold it
        done.acquire()

        def run() -> None:
            try:
                flush()
            except BaseException:
                pass
            finally:
                done.release()

        try:
            # ``_thread``, not ``threading``: the main thread may have been interrupted
            # inside ``threading``'s own bookkeeping lock.
            _thread.start_new_thread(run, ())
            done.acquire(timeout=_wait)
        except Exception:
            pass
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


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
