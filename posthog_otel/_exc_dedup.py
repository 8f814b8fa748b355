"""Storm protection for ``$exception`` events: the same error raised in a loop must not
flood PostHog or the queue.

Two captures are the same when they have the same person, types, messages and
crash sites (innermost frames) (``_exc_snapshot.dedup_key``). The first one within ``window``
seconds is sent; the others are dropped on the caller's thread before anything is
queued (counted in ``stats.dropped["deduplicated"]``), and the next one sent after the
window carries how many were suppressed (``$exception_suppressed_count``). The table is
bounded (``MAX_KEYS``, oldest forgotten first), so a storm of distinct errors costs a
bounded amount of memory too. An exception object is also sent at most once (a
logged exception that the middleware sees again is not sent twice).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from ._fork import fork_safe_lock

__all__ = ["DEFAULT_WINDOW", "ExceptionDedup", "mark_sent"]

DEFAULT_WINDOW = 5.0
MAX_KEYS = 1024
_SENT = "__posthog_otel_sent__"


class ExceptionDedup:
    """Which exceptions to send and how many were suppressed (thread-safe)."""

    def __init__(
        self, window: float = DEFAULT_WINDOW, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._lock = fork_safe_lock()
        # key -> [time the last one was sent, suppressed since]
        self._seen: dict[Hashable, list[float]] = {}

    def admit(self, key: Hashable) -> int | None:
        """``None``: suppress this capture (counted here as suppressed for the key);
        otherwise send it, carrying the number suppressed since the last one sent."""
        now = self._clock()
        with self._lock:
            seen = self._seen
            slot = seen.get(key)
            if slot is not None:
                if now - slot[0] < self.window:
                    slot[1] += 1
                    return None
                del seen[key]  # re-inserted last: the table stays in order of use
            elif len(seen) >= MAX_KEYS:
                del seen[next(iter(seen))]
            seen[key] = [now, 0]
            return 0 if slot is None else int(slot[1])


def mark_sent(exc: object, token: object) -> bool:
    """Tag a raised exception object as sent by the client ``token`` stands for;
    ``False`` if that client already sent it (then it is not sent again). Objects that
    take no attribute are never tagged."""
    if not isinstance(exc, BaseException):
        return True
    try:
        sent = getattr(exc, _SENT, None)
        if sent is None:
            setattr(exc, _SENT, [token])
        elif token in sent:
            return False
        else:
            sent.append(token)
    except Exception:  # __slots__ without a __dict__, a hostile __setattr__
        pass
    return True
