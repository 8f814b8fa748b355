"""The logs lane and the analytics lane never hold each other up (issue #14): both
flooded at once, each delivers everything within its caps, every record and event
counted; a logs endpoint that fails or hangs leaves analytics delivery at its normal
pace (and the reverse). Against the fake server and a small hostile one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from posthog_otel import Client, LogsConfig
from tests.conftest import API_KEY
from tests.hostile_server import HostileServer

LOGS = "/i/v1/logs"


def _run_all(*jobs: Callable[[], None]) -> None:
    """Run ``jobs`` on threads started together; re-raise the first failure."""
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            start.wait(10)
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def test_an_analytics_flood_and_a_logs_flood_at_once_both_deliver_everything_counted(
    make_client, server
):
    """Two threads flood events, two flood log records (the logs over their rate cap):
    every event arrives; exactly the cap's worth of records arrives, the rest counted
    as ``rate_limited``; no other drop on either lane; the counters add up."""
    per_events, per_thread_logs, cap = 1500, 2000, 3000
    client = make_client(
        flush_at=100,
        flush_interval=0.5,
        logs=LogsConfig(max_logs=cap, rate_window=3600, flush_at=200),
    )

    def events(n: int) -> Callable[[], None]:
        return lambda: [client.capture(f"e{n}", f"u{n}", {"i": i}) for i in range(per_events)]

    def logs(n: int) -> Callable[[], None]:
        return lambda: [client.capture_log(f"l{n}-{i}") for i in range(per_thread_logs)]

    _run_all(events(0), events(1), logs(0), logs(1))
    assert client.flush(30)

    stats, log_stats = client.stats, client.stats.logs
    assert stats is not None and log_stats is not None
    assert len(server.events) == 2 * per_events == stats.sent == stats.attempted
    assert not any(stats.dropped.values()), stats.dropped
    assert len(server.log_records()) == cap == log_stats.sent == log_stats.enqueued
    assert log_stats.dropped["rate_limited"] == 2 * per_thread_logs - cap
    assert log_stats.attempted == 2 * per_thread_logs
    assert sum(log_stats.dropped.values()) == log_stats.dropped["rate_limited"]
    # Each lane's order within a thread is kept.
    for n in range(2):
        bodies = [r["body"]["stringValue"] for r in server.log_records()]
        mine = [int(b.split("-")[1]) for b in bodies if b.startswith(f"l{n}-")]
        assert mine == sorted(mine)


def test_a_slow_logs_lane_under_flood_does_not_starve_analytics(make_client, server):
    """Each logs request takes 0.2 s and 5,000 records wait: analytics events captured
    meanwhile arrive by their own thresholds while most log records are still queued."""
    client = make_client(
        flush_at=50, flush_interval=0.2, logs=LogsConfig(max_batch_size=100, flush_at=100)
    )
    server.delay_next(0.2, count=100, path=LOGS)
    for i in range(5000):
        client.capture_log(f"l{i}")
    for i in range(200):
        client.capture(f"e{i}", "u1")
    assert len(server.wait_for_events(200, timeout=10)) == 200
    assert client.stats.logs.queued > 1000  # the logs lane is still busy
    server.clear_faults()
    assert client.flush(30)
    assert len(server.log_records()) == 5000


def test_a_logs_outage_answering_503_leaves_analytics_at_normal_pace(make_client, server):
    """The logs endpoint answers 503 to everything (the lane backs off and retries);
    analytics events sent by their threshold arrive as fast as without the outage; the
    records stay retained, counted."""
    client = make_client(flush_at=10, flush_interval=0.2, max_retries=5)
    server.fail_next(10_000, status=503, path=LOGS)
    for i in range(20):
        client.capture_log(f"l{i}")
    client.flush(0)
    server.wait_for_requests(1, path=LOGS)  # the logs lane is failing now
    started = time.monotonic()
    for i in range(100):
        client.capture(f"e{i}", "u1")
    assert len(server.wait_for_events(100, timeout=10)) == 100
    assert time.monotonic() - started < 5.0  # generous: a few local requests
    logs = client.stats.logs
    assert logs is not None and logs.sent == 0
    assert logs.queued + logs.in_flight == 20  # retained ones count as queued
    server.clear_faults()


def test_a_hanging_logs_endpoint_leaves_analytics_untouched_and_close_bounded():
    """A logs endpoint that reads the request and never answers: analytics events are
    delivered by their threshold meanwhile, and ``close`` returns within its deadline
    with the stuck records counted as ``shutdown``."""
    with HostileServer("ok", paths={LOGS: "silent"}) as hostile:
        client = Client(API_KEY, host=hostile.url, flush_at=10, flush_interval=0.2, timeout=30)
        try:
            for i in range(5):
                client.capture_log(f"l{i}")
            client.flush(0)  # the logs request now hangs
            for i in range(50):
                client.capture(f"e{i}", "u1")
            deadline = time.monotonic() + 10
            while len(hostile.events) < 50 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(hostile.events) == 50
        finally:
            started = time.monotonic()
            client.close(1.0)
            elapsed = time.monotonic() - started
        assert elapsed < 3.0
        logs = client.stats.logs
        assert logs is not None and logs.sent == 0 and logs.dropped["shutdown"] == 5
        assert client.stats.sent == 50


def test_an_analytics_outage_leaves_log_delivery_untouched(make_client, server):
    """The reverse: ``/batch/`` answers 503 to everything; log records sent by the
    lane's threshold keep arriving."""
    client = make_client(max_retries=5, flush_interval=0.2, logs=LogsConfig(flush_at=10))
    server.fail_next(10_000, status=503, path="/batch/")
    for i in range(20):
        client.capture(f"e{i}", "u1")
    client.flush(0)
    server.wait_for_requests(1, path="/batch/")  # analytics is failing now
    started = time.monotonic()
    for i in range(100):
        client.capture_log(f"l{i}")
    assert len(server.wait_for_log_records(100, timeout=10)) == 100
    assert time.monotonic() - started < 5.0
    assert client.stats.sent == 0
    server.clear_faults()


def test_a_hanging_analytics_endpoint_leaves_log_delivery_untouched():
    with HostileServer("ok", paths={"/batch": "silent"}) as hostile:
        client = Client(
            API_KEY,
            host=hostile.url,
            flush_interval=0.2,
            timeout=30,
            logs=LogsConfig(flush_at=10),
        )
        try:
            for i in range(5):
                client.capture(f"e{i}", "u1")
            client.flush(0)  # the analytics request now hangs
            for i in range(50):
                client.capture_log(f"l{i}")
            deadline = time.monotonic() + 10
            while client.stats.logs.sent < 50 and time.monotonic() < deadline:  # type: ignore[union-attr]
                time.sleep(0.01)
            assert client.stats.logs.sent == 50  # type: ignore[union-attr]
        finally:
            started = time.monotonic()
            client.close(1.0)
            elapsed = time.monotonic() - started
        assert elapsed < 3.0
        assert client.stats.dropped["shutdown"] == 5
