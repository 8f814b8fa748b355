"""Every event handed to the client is accounted for (issue #9 item 9), and the queue is
bounded in bytes as well as in events (item 15, the exporter's side)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from posthog_otel import Client
from posthog_otel.logging import PostHogHandler
from posthog_otel.messages import Capture
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY, started_threads
from .hostile_server import HostileServer
from .test_delivery import assert_accounted


def test_close_counts_an_unanswered_in_flight_batch_as_shutdown():
    with HostileServer("silent") as silent:
        client = Client(API_KEY, host=silent.url, flush_at=1000, flush_interval=60)
        for i in range(200):
            client.capture(f"e{i}", "u")
        started = time.monotonic()
        assert client.close(3) is False
        assert time.monotonic() - started < 6
        stats = client.stats
        assert stats.enqueued == 200 and stats.sent == 0
        assert stats.in_flight == 0 and stats.queued == 0
        assert stats.dropped["shutdown"] == 200
        assert_accounted(client)


def test_an_abandoned_batch_answered_later_is_not_counted_as_sent(server):
    before = set(threading.enumerate())
    client = Client(API_KEY, host=server.url, flush_at=1000, flush_interval=60)
    hold = server.hold_next()
    for i in range(5):
        client.capture(f"e{i}", "u")
    [thread] = started_threads(before, "posthog_otel-flush")
    assert client.close(1) is False
    hold.set()  # the server now answers 200 to the abandoned request
    server.wait_for_requests(1)
    thread.join(5)
    assert not thread.is_alive()
    stats = client.stats
    assert stats.sent == 0 and stats.dropped["shutdown"] == 5
    assert stats.in_flight == 0 and stats.queued == 0
    assert_accounted(client)


def test_events_waiting_for_flags_count_as_queued(server, make_client):
    client = make_client()  # no secret key: /flags for send_feature_flags
    hold = server.hold_next(path="/flags")
    client.capture("a", "u1", send_feature_flags=True)
    client.capture("b", "u1", send_feature_flags=True)
    stats = client.stats
    assert stats.attempted == 2 and stats.enqueued == 2 and stats.queued == 2
    assert_accounted(client)
    hold.set()
    assert client.flush(5) is True
    stats = client.stats
    assert stats.sent == 2 and stats.queued == 0
    assert_accounted(client)


def test_event_still_waiting_for_flags_at_close_is_counted_as_shutdown(server):
    before = set(threading.enumerate())
    client = Client(API_KEY, host=server.url, feature_flags_request_timeout=5)
    hold = server.hold_next(path="/flags")
    client.capture("a", "u1", send_feature_flags=True)
    [worker] = started_threads(before, "posthog_otel-flags-worker")
    client.close(1)
    stats = client.stats
    assert stats.queued == 0 and stats.in_flight == 0
    assert stats.dropped["shutdown"] == 1
    assert_accounted(client)
    hold.set()  # /flags answers after all: the event was given up, it is not sent
    worker.join(5)
    assert not worker.is_alive()
    stats = client.stats
    assert stats.dropped["shutdown"] == 1 and stats.dropped["closed"] == 0
    assert server.event_names() == []
    assert_accounted(client)


def test_deferred_items_that_are_not_events_leave_enqueued(server, make_client):
    def drop_some(event):
        return None if event["event"] == "drop me" else event

    client = make_client(before_send=drop_some)
    log = logging.getLogger("tests.accounting.deferred")
    log.propagate = False
    handler = PostHogHandler(client)
    log.addHandler(handler)
    try:
        log.warning("keep me", extra={"distinct_id": "u1"})
        log.warning("drop me", extra={"distinct_id": "u1"})
        log.warning("keep me too", extra={"distinct_id": "u1"})
        assert client.flush(5) is True
        stats = client.stats
        assert stats.attempted == 3 and stats.enqueued == 2 and stats.sent == 2
        assert stats.dropped["before_send"] == 1
        assert_accounted(client)
        client.close(2)
        log.warning("after close", extra={"distinct_id": "u1"})  # refused: still counted
        stats = client.stats
        assert stats.attempted == 4 and stats.dropped["closed"] == 1
        assert_accounted(client)
    finally:
        log.removeHandler(handler)


def test_a_deferred_item_dropped_while_close_abandons_it_is_counted_once(server):
    gate = threading.Event()
    building = threading.Event()

    def slow_drop(event):
        building.set()
        gate.wait(10)
        return None  # before_send drops it: a drop before the queue

    before = set(threading.enumerate())
    client = Client(API_KEY, host=server.url, before_send=slow_drop)
    client.pipeline.defer(_deferred(client, "dropped late"))
    [thread] = started_threads(before, "posthog_otel-flush")
    flushing = threading.Thread(target=client.flush, args=(5,))
    flushing.start()
    assert building.wait(5)
    assert client.close(0.3) is False  # abandons the item being built
    gate.set()
    thread.join(5)
    flushing.join(5)
    stats = client.stats
    assert stats.dropped["before_send"] == 1 and stats.dropped["shutdown"] == 0
    assert stats.enqueued == 0 and stats.queued == 0 and stats.in_flight == 0
    assert_accounted(client)


def test_every_entry_point_counts_as_attempted(server, make_client):
    client = make_client()
    client.capture("a", "u")
    client.capture("", "u")  # invalid
    client.identify("u", {"plan": "pro"})
    client.set("u", {"x": 1})
    client.set_once("u", {})  # invalid: nothing to set
    client.alias("u", "v")
    client.group_identify("company", "acme", {"n": 1})
    client.opt_out()
    client.capture("b", "u")  # opted_out
    client.opt_in()
    assert client.flush(5) is True
    stats = client.stats
    assert stats.attempted == 8
    assert stats.dropped["invalid"] == 2 and stats.dropped["opted_out"] == 1
    assert_accounted(client)


def test_concurrent_captures_are_counted_exactly(server, make_client):
    client = make_client(max_queue_size=300, flush_at=10_000)
    hold = server.hold_next()

    def produce() -> None:
        for i in range(2_000):
            client.capture("e", "u", {"i": i})

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = client.stats
    assert stats.attempted == 8_000
    assert_accounted(client)
    hold.set()
    client.flush(5)
    assert_accounted(client)


# ---------------------------------------------------------------- max_queue_bytes


def _deferred(client: Client, name: str) -> tuple[object, ...]:
    """A deferred item, as the integrations queue them (built on the flush thread)."""
    return (client.pipeline.finish, Capture(name, "u"), None)


def test_queue_is_bounded_in_bytes(server, make_client, warnings_log):
    client = make_client(max_queue_bytes=10_000)
    assert client.pipeline.defer(_deferred(client, "a"), nbytes=4_000)
    assert client.pipeline.defer(_deferred(client, "b"), nbytes=4_000)
    assert not client.pipeline.defer(_deferred(client, "c"), nbytes=4_000)
    assert client.stats.dropped["queue_full"] == 1
    assert "max_queue_bytes=10000" in warnings_log.text
    assert client.flush(5) is True  # what left the queue frees its bytes
    assert client.pipeline.defer(_deferred(client, "d"), nbytes=9_000)
    assert client.flush(5) is True
    assert server.event_names() == ["a", "b", "d"]
    assert_accounted(client)


def test_max_queue_bytes_applies_to_captures_too(server, make_client, clock):
    # A capture weighs (about) what it will encode to: four 10 KB events fit in 45 KB.
    client = make_client(max_queue_bytes=45_000, max_retries=0, _clock=clock)
    big = {"blob": "x" * 10_000}
    results = [client.capture(f"e{i}", "u", big) for i in range(6)]
    assert results.count(None) == 2
    assert client.stats.dropped["queue_full"] == 2
    assert client.flush(5) is True
    assert server.event_names() == ["e0", "e1", "e2", "e3"]
    assert_accounted(client)


def test_a_retained_batch_weighs_what_it_encodes_to(server, make_client, clock):
    client = make_client(max_queue_bytes=64 * 1024, max_retries=0, _clock=clock, gzip=False)
    server.fail_next(1, 503)
    client.capture("big", "u", {"blob": "x" * 40_000})
    assert client.flush(5) is False  # retained: its ~40 KB still count
    assert client.stats.retained == 1
    assert not client.pipeline.defer(_deferred(client, "more"), nbytes=30_000)
    assert client.pipeline.defer(_deferred(client, "small"), nbytes=1_000)
    assert client.flush(5) is True
    assert server.event_names() == ["big", "small"]


@pytest.mark.parametrize("value", [0, -1, 1.5, "64MB", True])
def test_max_queue_bytes_is_validated(value):
    with pytest.raises(ValueError, match="max_queue_bytes"):
        Client(API_KEY, max_queue_bytes=value)


def test_max_queue_bytes_default_is_64_mib():
    with FakePostHog() as server:
        client = Client(API_KEY, host=server.url)
        assert client.config.delivery.max_queue_bytes == 64 * 1024 * 1024
        client.close(1)


def test_an_event_the_full_flags_worker_cannot_hold_is_counted_as_sent_without_flags(
    server, make_client, monkeypatch
):
    from posthog_otel import _flags_worker as _worker

    monkeypatch.setattr(_worker, "MAX_WAITING", 0)  # the worker is full
    client = make_client()  # no secret key: /flags for send_feature_flags
    for name in ("a", "b"):
        assert client.capture(name, "u1", send_feature_flags=True)
    assert client.stats.corrected["flags_unavailable"] == 2
    assert client.flush(5) is True
    assert sorted(server.event_names()) == ["a", "b"]
    assert [r for r in server.requests if r.path == "/flags"] == []
    assert_accounted(client)


def test_flush_is_false_while_an_event_still_waits_for_flags(server, make_client):
    """flush() says True only when everything was delivered, the flags worker's events
    included (at exit, a wrong True left such an event queued, uncounted, for ever)."""
    client = make_client(feature_flags_request_timeout=10)
    hold = server.hold_next(path="/flags")
    try:
        client.capture("a", "u1", send_feature_flags=True)
        assert client.flush(0.3) is False
        assert client.stats.queued == 1
    finally:
        hold.set()
    assert client.flush(5) is True
    assert server.event_names() == ["a"]


def test_events_left_in_the_spool_at_close_are_spooled_not_queued_nor_dropped(tmp_path):
    """Issue #16: with ``spool_path``, ``enqueued == sent + queued + in_flight + spooled +
    drops after the queue``; what a dead server left is ``spooled``, and only that."""
    with FakePostHog() as server:
        client = Client(
            API_KEY,
            host=server.url,
            spool_path=tmp_path / "spool.db",
            flush_interval=60,
            max_retries=0,
        )
        client.capture("sent", "u")
        assert client.flush(5) is True
        server.fail_next(100, 503)
        for i in range(4):
            client.capture(f"kept{i}", "u")
        client.capture("", "u")  # invalid: before the queue
        assert client.flush(5) is False
        stats = client.stats
        assert stats.queued == 4 and stats.spooled == 0  # some retained, all held
        assert_accounted(client)
        assert client.close(1) is False
        stats = client.stats
        assert stats.sent == 1 and stats.spooled == 4 and stats.queued == 0
        assert sum(stats.dropped.values()) == 1 and stats.dropped["invalid"] == 1
        assert_accounted(client)
