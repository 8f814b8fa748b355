"""When the flush thread works: the ``flush()`` requests that make it send at once, and
the moments it gives way to the application."""

from __future__ import annotations

from time import sleep as _sleep  # bound now: an application's patched time.sleep is its own

__all__ = ["FlushRequests", "give_way"]


def give_way(backlog: int, max_queue: int, queued_bytes: int, max_bytes: int) -> None:
    """Between two slices of a batch encoded for a size or timer trigger: release the
    GIL, so that the application's threads run before the flush thread takes it back
    (CPython hands it to a waiting thread, and a thread that wants it back waits for the
    switch interval). Under a burst the flush thread then takes a small share of the
    interpreter instead of all it can get, and catches up when the application pauses.

    Not once the ``backlog`` (queued and in flight) is a quarter of ``max_queue`` or
    ``queued_bytes`` a quarter of ``max_bytes``: then delivery comes first, and three
    quarters of the queue are left for what the application sends faster than the
    thread delivers. (An application that never pauses keeps that quarter queued: a
    bounded delay, and what a hard kill would lose without ``spool_path``.)"""
    if backlog < max_queue >> 2 and queued_bytes < max_bytes >> 2:
        _sleep(0)


class FlushRequests:
    """Counts of ``flush()`` requests, guarded by the exporter's lock.

    ``asked`` numbers the requests (a request's *generation*), ``served`` is the newest
    generation a finished delivery cycle served, and ``upto`` is the exporter's
    ``accepted`` count when the newest request was made: the events it asks to see
    resolved. A request is *wanted* while no cycle has served it and some of those
    events are unresolved; one that a cycle already running satisfied (a size-triggered
    batch took everything) is not, so it cannot make the next cycle drain greedily,
    ignoring ``flush_at`` and giving no way to the application, while events keep coming.
    """

    __slots__ = ("asked", "served", "upto")

    def __init__(self) -> None:
        self.asked = self.served = self.upto = 0

    def ask(self, accepted: int) -> int:
        """A new request for everything of the ``accepted`` so far; its generation."""
        self.asked += 1
        self.upto = accepted
        return self.asked

    def wanted(self, resolved: int) -> bool:
        """Whether a request still waits for events (``resolved``: how many are)."""
        return self.asked > self.served and resolved < self.upto

    def serve(self, generation: int) -> None:
        """A delivery cycle that started at ``generation`` has finished."""
        self.served = max(self.served, generation)
