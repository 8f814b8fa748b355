"""Supervision of the library's background threads (flush thread, flags worker, poller).

Each of them must keep running whatever happens in it: an exception that escapes its
loop would otherwise end the thread silently, and with it delivery (a full queue, a
``flush()`` waiting forever). ``start_supervised`` runs a loop in a daemon thread and, if
an exception escapes it, logs it (once per thread, later ones at DEBUG), counts it
(``ClientStats.thread_restarts``) and runs the loop again after a short back-off. The
restarts are bounded: after ``MAX_RESTARTS`` crashes in a row the thread gives up and
tells its owner (``on_give_up``), which starts a fresh thread on the next demand
(``submit``/``flush``) and never waits on the dead one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._log import logger
from ._shutdown import block_termination_signals

MAX_RESTARTS = 8
_BACKOFF_START = 0.01  # seconds before the first restart, doubling ...
_BACKOFF_MAX = 1.0  # ... up to this
_HEALTHY_AFTER = 60.0  # a loop that ran this long before crashing starts a new count


def start_supervised(
    name: str,
    loop: Callable[[], None],
    *,
    on_restart: Callable[[], None] | None = None,
    on_give_up: Callable[[], None] | None = None,
    stopping: Callable[[], bool] | None = None,
) -> threading.Thread:
    """Start a daemon thread running ``loop`` under supervision and return it.

    ``loop`` returning normally ends the thread. ``on_restart`` is called for every
    restart (to count it), ``on_give_up`` once if the thread ends after too many crashes,
    and ``stopping`` is checked before each restart (no restart once the owner stops).
    """
    thread = threading.Thread(
        target=_supervise,
        args=(name, loop, on_restart, on_give_up, stopping),
        name=name,
        daemon=True,
    )
    thread.start()
    return thread


def _supervise(
    name: str,
    loop: Callable[[], None],
    on_restart: Callable[[], None] | None,
    on_give_up: Callable[[], None] | None,
    stopping: Callable[[], bool] | None,
) -> None:
    block_termination_signals()  # they are for the main thread (see there)
    crashes = 0
    logged = False
    while True:
        started = time.monotonic()
        try:
            loop()
            return
        except BaseException as exc:  # the thread must outlive any error, SystemExit too
            if not logged:  # once per thread: the rest are counted, and logged at DEBUG
                logger.exception("posthog_otel %s thread: unexpected error; restarting", name)
                logged = True
            else:
                logger.debug("posthog_otel %s thread: unexpected error again: %r", name, exc)
        if time.monotonic() - started >= _HEALTHY_AFTER:
            crashes = 0
        crashes += 1
        if crashes > MAX_RESTARTS or (stopping is not None and _safe(stopping)):
            if crashes > MAX_RESTARTS:
                logger.error(
                    "posthog_otel %s thread: gave up after %d restarts; it starts again "
                    "on the next demand",
                    name,
                    MAX_RESTARTS,
                )
            if on_give_up is not None:
                _safe(on_give_up)
            return
        if on_restart is not None:
            _safe(on_restart)
        time.sleep(min(_BACKOFF_START * 2.0 ** (crashes - 1), _BACKOFF_MAX))


def _safe(call: Callable[[], object]) -> bool:
    """Run a supervisor callback; it must not be what kills the thread."""
    try:
        return bool(call())
    except Exception:
        return False
