"""The flush thread gives way to the application: while it encodes a batch for a size or
timer trigger it releases the GIL between slices, unless a flush waits or the backlog is
a quarter of the queue's capacity; and a flush request that a running cycle already served
does not outlive it.

How the tests see it: a "spinner" thread counts while it runs, and the ``before_send``
hook (which runs on the flush thread, once per log record as its event is built) notes
the count. With a switch interval of a minute no thread is ever forced to hand the GIL
over, so the count moves while a batch is built only where the flush thread released it.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from posthog_otel import Client, PostHogHandler
from posthog_otel.testing import FakePostHog

BATCH = 1_280  # twenty slices of 64


class Spinner:
    """A thread that counts, handing the GIL back after every step."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.count += 1
            time.sleep(0)

    def __enter__(self) -> Spinner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def spinner() -> Iterator[Spinner]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(60.0)  # no forced hand-over: only released GILs count
    try:
        with Spinner() as spinning:
            yield spinning
    finally:
        sys.setswitchinterval(previous)


def recording_client(
    make_client: Callable[..., Client],
    spinner: Spinner,
    *,
    then: Callable[[int], None] | None = None,
    **options: Any,
) -> tuple[logging.Logger, list[int]]:
    """A logger whose records become events through a client whose ``before_send``
    notes the spinner's count as each event is built (on the flush thread), then calls
    ``then(events built so far)``."""
    seen: list[int] = []

    def note(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(spinner.count)
        if then is not None:
            then(len(seen))
        return event

    options.setdefault("max_batch_size", BATCH)
    client = make_client(before_send=note, **options)
    log = logging.getLogger(f"tests.give_way.{id(seen)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(PostHogHandler(client))
    return log, seen


def moves(seen: list[int]) -> int:
    """How many times the spinner ran between two events of the batch."""
    return sum(1 for before, after in itertools.pairwise(seen) if after != before)


def log_batch(log: logging.Logger, message: str = "signed_up") -> None:
    for i in range(BATCH):
        log.info(message, extra={"distinct_id": f"user-{i}"})


def test_a_size_triggered_batch_gives_way_between_slices(server, make_client, spinner):
    log, seen = recording_client(make_client, spinner, flush_at=BATCH)
    log_batch(log)  # the last record reaches flush_at: the thread builds one batch
    server.wait_for_events(BATCH)
    assert len(seen) == BATCH
    # Nineteen slice boundaries; a hand-over is a race the waiting thread nearly always
    # wins (on a loaded machine it may not be scheduled in time).
    assert moves(seen) >= 5, moves(seen)


def test_a_flush_that_waits_gets_the_whole_batch_at_once(server, make_client, spinner):
    log, seen = recording_client(make_client, spinner, flush_at=10_000)
    log_batch(log)
    client = log.handlers[0].client  # type: ignore[attr-defined]
    assert client.flush(10)
    assert len(seen) == BATCH
    assert moves(seen) <= 1, moves(seen)


def test_a_flush_asked_for_while_a_batch_is_encoded_stops_the_giving_way(
    server, make_client, spinner
):
    clients: list[Client] = []

    def flush_at_the_middle(built: int) -> None:
        if built == BATCH // 2:  # on the flush thread: asks, returns at once
            assert clients[0].flush(0) is False

    log, seen = recording_client(make_client, spinner, then=flush_at_the_middle, flush_at=BATCH)
    clients.append(log.handlers[0].client)  # type: ignore[attr-defined]
    log_batch(log)
    server.wait_for_events(BATCH)
    assert moves(seen[: BATCH // 2]) >= 3, moves(seen[: BATCH // 2])
    assert moves(seen[BATCH // 2 :]) <= 1, moves(seen[BATCH // 2 :])


def test_the_flush_thread_never_calls_a_patched_time_sleep(server, make_client, monkeypatch):
    """Applications patch ``time.sleep`` in their tests (to skip their own waits)."""
    calls: list[float] = []
    client = make_client(flush_at=BATCH, max_batch_size=BATCH)
    log = logging.getLogger("tests.give_way.patched_sleep")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(PostHogHandler(client))
    monkeypatch.setattr(time, "sleep", calls.append)
    log_batch(log)
    server.wait_for_events(BATCH)
    assert calls == []


def test_no_give_way_once_the_backlog_is_a_quarter_of_the_queue(server, make_client, spinner):
    # flush_at is over a quarter of max_queue_size: the trigger itself finds it so.
    log, seen = recording_client(make_client, spinner, flush_at=BATCH, max_queue_size=4_000)
    log_batch(log)
    server.wait_for_events(BATCH)
    assert len(seen) == BATCH
    assert moves(seen) <= 1, moves(seen)


def test_no_give_way_once_a_quarter_of_max_queue_bytes_is_queued(server, make_client, spinner):
    # Two batches of 640 records of over 5,000 bytes each: while the first is built the
    # second (over 3.2 MB) is queued, more than a quarter of max_queue_bytes.
    log, seen = recording_client(
        make_client,
        spinner,
        flush_at=BATCH,
        max_batch_size=BATCH // 2,
        max_queue_bytes=12_000_000,
    )
    log_batch(log, "x" * 5_000)
    server.wait_for_events(BATCH // 2)  # the second half stays: fewer than flush_at
    assert log.handlers[0].client.flush(10)  # type: ignore[attr-defined]
    assert len(seen) == BATCH
    assert len(server.capture_requests()) == 2
    assert moves(seen[: BATCH // 2]) <= 1, moves(seen[: BATCH // 2])


def test_a_flush_served_by_a_running_cycle_does_not_outlive_it(
    server: FakePostHog, make_client: Callable[..., Client]
) -> None:
    """A flush whose events a size-triggered cycle delivered used to stay pending: the
    next cycle then ran as a flush, sending what was below ``flush_at`` at once (and
    giving no way to the application for as long as events kept coming)."""
    client = make_client(flush_at=10, max_batch_size=10)
    release = server.hold_next()
    for i in range(10):
        client.capture(f"a{i}", "u")  # the size trigger: one batch, held by the server
    deadline = time.monotonic() + 5
    while client.stats.in_flight != 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert client.stats.in_flight == 10
    assert client.flush(0) is False  # asked for while the batch is in flight
    release.set()
    server.wait_for_events(10)
    assert client.flush(5)
    for i in range(15):
        client.capture(f"b{i}", "u")  # the size trigger again: 10 go, 5 stay below flush_at
    server.wait_for_events(20)
    # A stale flush request would send the other five at once: give it the time to.
    time.sleep(0.3)
    assert len(server.events) == 20
    assert client.stats.queued == 5
    assert client.flush(5)
    assert len(server.events) == 25
