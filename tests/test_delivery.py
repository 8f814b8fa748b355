"""The batching exporter against the fake server: triggers, status codes, retries,
retention across cycles, ordering, capacity, close."""

from __future__ import annotations

import threading
import time

import pytest

from posthog_otel.testing import FakePostHog

from .conftest import started_threads


def names(server: FakePostHog) -> list[str]:
    return server.event_names()


# ---------------------------------------------------------------- triggers


def test_flush_at_triggers_one_batch(server, make_client):
    client = make_client(flush_at=2)
    client.capture("First", "user-123")
    client.capture("Second", "user-123")
    server.wait_for_events(2)
    assert len(server.capture_requests()) == 1
    assert names(server) == ["First", "Second"]
    assert client.stats.queued == 0


def test_flush_at_three_keeps_order(server, make_client):
    client = make_client(flush_at=3)
    for name in ("First", "Second", "Third"):
        client.capture(name, "u")
    server.wait_for_events(3)
    assert names(server) == ["First", "Second", "Third"]


def test_flush_interval_follows_the_injected_clock(server, make_client, clock):
    client = make_client(flush_interval=10.0, _clock=clock)
    client.capture("Delayed", "u")
    with pytest.raises(TimeoutError):
        server.wait_for_events(1, timeout=0.3)
    clock.advance(10.0)
    server.wait_for_events(1)
    assert names(server) == ["Delayed"]


def test_flush_with_nothing_pending_sends_nothing(server, make_client):
    client = make_client()
    assert client.flush() is True
    assert server.requests == []


def test_flush_sends_all_in_max_batch_size_requests(server, make_client):
    client = make_client(max_batch_size=40)
    for i in range(100):
        client.capture(f"e{i}", "u")
    assert client.flush(5)
    sizes = [len(r.events) for r in server.capture_requests()]
    assert sizes == [40, 40, 20]
    assert names(server) == [f"e{i}" for i in range(100)]


def test_batches_are_capped_by_bytes(server, make_client):
    client = make_client(max_batch_bytes=64 * 1024, gzip=False)
    blob = "x" * 10_000
    for i in range(20):
        client.capture(f"e{i}", "u", {"blob": blob})
    assert client.flush(5)
    requests = server.capture_requests()
    assert len(requests) >= 4
    assert all(len(r.body) <= 64 * 1024 for r in requests)
    assert names(server) == [f"e{i}" for i in range(20)]


def test_oversize_event_is_dropped_and_counted(server, make_client):
    client = make_client()
    assert client.capture("huge", "u", {"blob": "x" * (901 * 1024)}) is not None
    client.capture("small", "u")
    assert client.flush(5) is False  # not everything enqueued was delivered
    assert names(server) == ["small"]
    assert client.stats.dropped["oversize"] == 1


# ---------------------------------------------------------------- status codes


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(server, make_client, clock, status):
    client = make_client(_clock=clock)
    server.fail_next(2, status)
    client.capture("evt", "u")
    assert client.flush(5) is True
    assert names(server) == ["evt"]
    assert client.stats.retries == 2
    assert len(server.capture_requests()) == 3


def test_other_2xx_is_success(server, make_client):
    client = make_client()
    server.fail_next(1, 204)
    client.capture("evt", "u")
    assert client.flush(5) is True
    assert client.stats.retries == 0
    assert client.stats.sent == 1


@pytest.mark.parametrize("status", [401, 403, 404, 415])
def test_terminal_4xx_drops_batch_and_calls_on_error(server, make_client, clock, status):
    errors = []
    client = make_client(_clock=clock, on_error=lambda exc, events: errors.append((exc, events)))
    server.fail_next(1, status)
    client.capture("a", "u")
    client.capture("b", "u")
    assert client.flush(5) is False
    assert len(server.capture_requests()) == 1
    assert client.stats.dropped["rejected"] == 2
    assert client.stats.failed_batches == 1
    ((exc, events),) = errors
    assert exc.status == status
    assert [e["event"] for e in events] == ["a", "b"]
    client.capture("c", "u")
    assert client.flush(5) is True
    assert names(server) == ["c"]


def test_transport_errors_are_retried(server, make_client, clock):
    client = make_client(_clock=clock)
    server.drop_next(2)
    client.capture("evt", "u")
    assert client.flush(5) is True
    assert names(server) == ["evt"]
    assert client.stats.retries == 2


def test_413_halves_until_batches_fit(make_client):
    with FakePostHog(max_body_bytes=20_000) as small:
        client = make_client(host=small.url, gzip=False)
        for i in range(40):
            client.capture(f"e{i}", "u", {"pad": "y" * 1500})
        assert client.flush(10) is True
        assert small.event_names() == [f"e{i}" for i in range(40)]
        statuses = [r.status for r in small.capture_requests()]
        assert 413 in statuses
        assert all(len(r.raw_body) <= 20_000 for r in small.capture_requests() if r.status == 200)
        assert client.stats.dropped["oversize"] == 0


def test_413_on_a_single_event_drops_only_it(make_client):
    with FakePostHog(max_event_bytes=5_000) as strict:
        errors = []
        client = make_client(host=strict.url, on_error=lambda e, ev: errors.append(ev))
        client.capture("a", "u")
        client.capture("big", "u", {"pad": "z" * 6_000})
        client.capture("c", "u")
        assert client.flush(10) is False
        assert strict.event_names() == ["a", "c"]
        assert client.stats.dropped["oversize"] == 1
        assert [e["event"] for e in errors[0]] == ["big"]


def test_400_splits_so_only_the_bad_event_is_dropped(server, make_client):
    errors = []
    client = make_client(on_error=lambda exc, events: errors.append((exc.status, events)))
    server.reject_if(lambda event: event["event"] == "c")
    for name in "abcdefg":
        client.capture(name, "u")
    assert client.flush(10) is False
    assert names(server) == ["a", "b", "d", "e", "f", "g"]
    assert client.stats.dropped["rejected"] == 1
    ((status, events),) = errors
    assert status == 400 and [e["event"] for e in events] == ["c"]


def test_retry_after_is_honoured(server, make_client, clock):
    client = make_client(_clock=clock)
    server.fail_next(1, 429, retry_after=7)
    client.capture("evt", "u")
    assert client.flush(5) is True
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 7.0


def test_retry_after_http_date_is_honoured(server, make_client, clock):
    from email.utils import formatdate

    client = make_client(_clock=clock)
    server.fail_next(1, 503, retry_after=formatdate(time.time() + 20, usegmt=True))
    client.capture("evt", "u")
    assert client.flush(5) is True
    assert 15.0 <= clock.sleeps[0] <= 30.0


def test_backoff_grows_with_jitter_and_is_capped(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=8)
    server.fail_next(8, 503)
    client.capture("evt", "u")
    assert client.flush(5) is True
    expected = [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert len(clock.sleeps) == 8
    for slept, base in zip(clock.sleeps, expected, strict=True):
        assert base * 0.8 <= slept <= base * 1.2


# ---------------------------------------------------------------- retention across cycles


def test_failed_cycle_keeps_events_queued_then_next_flush_delivers(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=1)
    server.fail_next(2, 503)
    client.capture("Retry Me", "user-123")
    assert client.flush(5) is False
    stats = client.stats
    assert stats.retained == 1 and stats.queued == 1
    assert names(server) == []
    client.capture("Later", "user-123")
    assert client.flush(5) is True
    assert names(server) == ["Retry Me", "Later"]
    assert client.stats.retained == 0 and client.stats.queued == 0


def test_retained_batch_is_retried_after_cooldown(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=0)
    server.fail_next(1, 503)
    client.capture("a", "u")
    assert client.flush(5) is False
    clock.advance(29.0)
    with pytest.raises(TimeoutError):
        server.wait_for_events(1, timeout=0.3)
    clock.advance(1.5)
    server.wait_for_events(1)
    assert names(server) == ["a"]


def test_retained_batch_is_given_up_after_max_retry_cycles(server, make_client, clock):
    errors = []
    client = make_client(
        _clock=clock,
        max_retries=0,
        max_retry_cycles=3,
        on_error=lambda exc, events: errors.append(events),
    )
    server.fail_next(3, 503)
    client.capture("doomed", "u")
    assert client.flush(5) is False
    assert client.flush(5) is False
    assert client.stats.retained == 1
    assert client.flush(5) is False
    stats = client.stats
    assert stats.retained == 0 and stats.queued == 0
    assert stats.dropped["retries_exhausted"] == 1
    assert [e["event"] for e in errors[0]] == ["doomed"]


def test_order_is_preserved_across_retry_cycles(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=0, max_batch_size=5)
    for i in range(5):
        client.capture(f"e{i}", "u")
    server.fail_next(1, 503)
    assert client.flush(5) is False
    for i in range(5, 12):
        client.capture(f"e{i}", "u")
    assert client.flush(5) is True
    assert names(server) == [f"e{i}" for i in range(12)]


def test_uuid_and_timestamp_are_kept_across_retries(server, make_client, clock):
    client = make_client(_clock=clock, max_retries=0)
    server.fail_next(1, 503)
    returned = client.capture("evt", "u")
    assert client.flush(5) is False
    failed = server.capture_requests()[0]
    clock.advance(31)
    server.wait_for_events(1)
    import gzip
    import json

    first = json.loads(gzip.decompress(failed.raw_body))["batch"][0]
    (delivered,) = server.events
    assert delivered["uuid"] == first["uuid"] == returned
    assert delivered["timestamp"] == first["timestamp"]


def test_full_queue_refuses_new_events_and_keeps_accepted(server, make_client, clock):
    client = make_client(_clock=clock, max_queue_size=2, max_retries=0)
    server.fail_next(1, 503)
    assert client.capture("a", "u")
    assert client.capture("b", "u")
    assert client.capture("c", "u") is None
    assert client.stats.dropped["queue_full"] == 1
    assert client.flush(5) is False
    assert client.capture("d", "u") is None  # the retained batch counts toward capacity
    assert client.flush(5) is True
    assert names(server) == ["a", "b"]
    assert client.stats.dropped["queue_full"] == 2


def test_queue_overflow_is_counted_exactly(server, make_client, warnings_log):
    client = make_client(max_queue_size=500, flush_at=10_000)
    hold = server.hold_next()
    results = [client.capture(f"e{i}", "u") for i in range(1_500)]
    accepted = sum(r is not None for r in results)
    assert accepted == 500
    assert client.stats.dropped["queue_full"] == 1_000
    assert client.stats.enqueued == 500
    assert "queue_full" in warnings_log.text
    assert len([r for r in warnings_log.records if "queue_full" in r.getMessage()]) == 1
    hold.set()
    assert client.flush(5)
    assert len(server.events) == 500


def test_events_captured_while_a_batch_is_in_flight(server, make_client):
    client = make_client(max_queue_size=3, flush_at=1000)
    for i in range(1, 4):
        client.capture(f"initial-{i}", "u")
    release = server.hold_next()
    done = threading.Event()
    threading.Thread(target=lambda: (client.flush(10), done.set())).start()
    server_saw = threading.Event()

    def in_flight() -> bool:
        return client.stats.in_flight == 3

    deadline = time.monotonic() + 5
    while not in_flight() and time.monotonic() < deadline:
        server_saw.wait(0.01)
    assert in_flight()
    for i in range(1, 4):
        assert client.capture(f"replacement-{i}", "u") is not None
    release.set()
    assert done.wait(5)
    assert names(server)[:3] == ["initial-1", "initial-2", "initial-3"]
    assert client.stats.queued in (0, 3)
    assert client.flush(5)
    assert names(server) == [f"initial-{i}" for i in range(1, 4)] + [
        f"replacement-{i}" for i in range(1, 4)
    ]


def test_eight_threads_deliver_every_event_exactly_once(server, make_client):
    client = make_client(max_queue_size=200_000, flush_interval=0.05)
    per_thread = 20_000

    def produce(t: int) -> None:
        for i in range(per_thread):
            client.capture("load", f"t{t}", {"i": i})

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(60)
    events = server.events
    assert len(events) == 8 * per_thread
    assert len({e["uuid"] for e in events}) == 8 * per_thread
    for t in range(8):
        seq = [e["properties"]["i"] for e in events if e["distinct_id"] == f"t{t}"]
        assert seq == list(range(per_thread))  # FIFO per producer
    assert client.stats.dropped["queue_full"] == 0


# ---------------------------------------------------------------- close


def test_close_delivers_pending_and_stops(server, make_client):
    before = set(threading.enumerate())
    client = make_client()
    client.capture("Save", "user-123")
    [flush_thread] = started_threads(before, "posthog_otel-flush")
    assert client.close(5) is True
    assert names(server) == ["Save"]
    assert not flush_thread.is_alive()
    assert client.capture("After Shutdown", "user-123") is None
    assert client.stats.dropped["closed"] == 1
    assert client.close() is True  # idempotent
    client.shutdown()


def test_close_returns_within_timeout_when_server_is_down(make_client, warnings_log):
    server = FakePostHog().start()
    url = server.url
    server.stop()  # nothing listens any more: connections are refused
    client = make_client(host=url)
    client.capture("Save", "u")
    started = time.monotonic()
    assert client.close(timeout=1.0) is False
    assert time.monotonic() - started < 2.5
    assert client.stats.dropped["shutdown"] == 1
    assert "shutdown" in warnings_log.text


def test_close_absorbs_a_503_and_records_a_delivery_warning(
    server, make_client, clock, warnings_log
):
    client = make_client(_clock=clock, max_retries=0)
    server.fail_next(1, 503)
    client.capture("Save", "user-123")
    assert client.close(5) is False
    assert "delivery" in warnings_log.text
    assert client.stats.dropped["shutdown"] == 1


def test_context_manager_closes(server):
    from posthog_otel import Client

    with Client("phc_x", host=server.url) as client:
        client.capture("evt", "u")
    assert names(server) == ["evt"]
    assert client.capture("later", "u") is None


def test_sync_mode_sends_on_the_calling_thread(server, make_client):
    seen = []
    import httpx

    http = httpx.Client(event_hooks={"request": [lambda r: seen.append(threading.get_ident())]})
    before = set(threading.enumerate())
    client = make_client(sync_mode=True, http_client=http)
    client.capture("now", "u")
    assert names(server) == ["now"]
    assert seen == [threading.get_ident()]
    assert started_threads(before, "posthog_otel-flush") == []  # no flush thread
    http.close()


def test_user_http_client_is_used_and_not_closed(server, make_client):
    import httpx

    seen = []
    http = httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    client = make_client(http_client=http)
    client.capture("evt", "u")
    client.close(5)
    assert seen == [server.url + "/batch/"]
    assert not http.is_closed
    http.close()


def test_flush_thread_suppresses_otel_instrumentation(server, make_client):
    import httpx
    from opentelemetry import context as otel_context

    seen = []

    def hook(request: httpx.Request) -> None:
        seen.append(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))

    http = httpx.Client(event_hooks={"request": [hook]})
    client = make_client(http_client=http)
    client.capture("evt", "u")
    client.flush(5)
    assert seen == [True]
    assert otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY) is None
    http.close()


def test_on_error_may_call_flush_and_close_without_deadlock(server, make_client, clock):
    calls = []
    handled = threading.Event()

    def on_error(exc, events):
        calls.append(client.flush(1))
        calls.append(client.close(1))
        handled.set()

    client = make_client(_clock=clock, on_error=on_error)
    server.fail_next(1, 401)
    client.capture("rejected", "u")
    done = threading.Event()
    threading.Thread(target=lambda: (client.flush(5), done.set()), daemon=True).start()
    assert done.wait(5)
    assert handled.wait(5)
    assert calls == [False, False]
    assert client.capture("after", "u") is None


# ---------------------------------------------------------------- accounting (issue #9, item 9)


def assert_accounted(client) -> None:
    """Every event handed to the client is somewhere: ``attempted == enqueued + drops
    before the queue`` and ``enqueued == sent + queued + in_flight + spooled + drops after
    it``."""
    from posthog_otel._stats import POST_QUEUE_DROPS, PRE_QUEUE_DROPS

    stats = client.stats
    before = sum(stats.dropped[reason] for reason in PRE_QUEUE_DROPS)
    after = sum(stats.dropped[reason] for reason in POST_QUEUE_DROPS)
    assert stats.attempted == stats.enqueued + before, stats
    assert stats.enqueued == stats.sent + stats.queued + stats.in_flight + stats.spooled + after, (
        stats
    )


@pytest.fixture
def make_client(make_client):
    """The shared factory, with the accounting checked after every scenario: as the test
    left the client, and again after ``close()`` (nothing queued or in flight then)."""
    clients = []

    def make(**kwargs):
        client = make_client(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        assert_accounted(client)
        client.close(timeout=2)
        assert_accounted(client)
        stats = client.stats
        assert stats.queued == 0 and stats.in_flight == 0, stats
