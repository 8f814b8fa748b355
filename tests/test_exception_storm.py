"""Storm protection for ``$exception`` events (issue #12): the same error in a loop is
sent once per window per person, the repeats are counted (``deduplicated``) and the
next one sent carries how many were suppressed; memory stays bounded."""

from __future__ import annotations

import logging
import tracemalloc

from posthog_otel import PostHogHandler, context
from posthog_otel._exc_dedup import MAX_KEYS, ExceptionDedup
from posthog_otel.testing import FakeClock


def _fail(n: int = 0) -> None:
    raise ValueError("card declined")


def test_a_storm_of_100k_identical_exceptions_stays_bounded(server, make_client):
    clock = FakeClock()
    client = make_client(_clock=clock)

    def storm(count: int) -> None:
        for i in range(count):
            try:
                _fail(i)
            except ValueError:
                client.capture_exception(distinct_id="u1")

    tracemalloc.start()
    try:
        storm(100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stats = client.stats
    assert stats.queued == 1
    assert stats.dropped["deduplicated"] == 99_999
    assert stats.attempted == 100_000
    assert peak < 2_000_000  # nothing accumulates per suppressed exception
    # After the window, the next one is sent and carries the count.
    clock.advance(client.exceptions.dedup.window + 0.1)
    storm(1)
    assert client.flush(5)
    first, second = server.events
    assert "$exception_suppressed_count" not in first["properties"]
    assert second["properties"]["$exception_suppressed_count"] == 99_999


def test_dedup_is_per_person_and_per_exception(server, make_client):
    client = make_client()
    for person in ("u1", "u2"):
        for _ in range(3):
            try:
                _fail()
            except ValueError:
                client.capture_exception(distinct_id=person)
    for _ in range(3):
        client.capture_exception(KeyError("other"), "u1")  # never raised: same key
    with context(distinct_id="u3"):
        client.capture_exception(KeyError("other"))
    assert client.flush(5)
    sent = sorted((e["distinct_id"], e["properties"]["$exception_type"]) for e in server.events)
    assert sent == [
        ("u1", "KeyError"),
        ("u1", "ValueError"),
        ("u2", "ValueError"),
        ("u3", "KeyError"),
    ]
    assert client.stats.dropped["deduplicated"] == 6


def test_different_messages_or_stacks_are_not_deduplicated(server, make_client):
    client = make_client()
    for n in range(3):
        client.capture_exception(ValueError(f"order {n}"), "u1")

    def elsewhere():
        raise ValueError("card declined")

    for fn in (_fail, elsewhere):
        try:
            fn()
        except ValueError:
            client.capture_exception(distinct_id="u1")
    assert client.flush(5)
    assert len(server.events) == 5


def test_an_exception_object_is_sent_once(server, make_client):
    client = make_client()
    try:
        _fail()
    except ValueError as exc:
        assert client.capture_exception(exc, "u1") is not None
        assert client.capture_exception(exc, "u2") is None  # the same object again
    assert client.flush(5)
    assert len(server.events) == 1
    assert client.stats.dropped["deduplicated"] == 1


def test_a_logging_storm_sends_one_exception(server, make_client):
    client = make_client(max_queue_size=100_000)
    logger = logging.getLogger("app.storm")
    logger.propagate = False
    handler = PostHogHandler(client, event_with_exception=False)
    logger.addHandler(handler)
    try:
        for _ in range(10_000):
            try:
                _fail()
            except ValueError:
                logger.exception("payment_failed", extra={"distinct_id": "u1"})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert client.stats.queued == 1
    assert client.stats.dropped["deduplicated"] == 9_999


def test_the_dedup_table_is_bounded():
    now = [0.0]
    dedup = ExceptionDedup(window=60, clock=lambda: now[0])
    for key in range(MAX_KEYS * 3):
        assert dedup.admit(key) == 0
    assert dedup.admit(MAX_KEYS * 3 - 1) is None  # recent keys are remembered
    assert dedup.admit(0) == 0  # the oldest were forgotten: bounded memory
    now[0] = 61.0
    assert dedup.admit(MAX_KEYS * 3 - 1) == 1  # after the window: sent, with the count
