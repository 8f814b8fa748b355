"""The durable spool's cost on the caller's thread (issue #16): ``client.capture`` with
and without ``spool_path``, against the same local sink, rounds alternated.

    python benchmarks/bench_spool.py            # 20,000 calls x 5 rounds each (~30 s)
    python benchmarks/bench_spool.py --quick

Each round builds a fresh client (1,000 calls of warm-up, flushed) and closes it after,
so only one client's threads run while a loop is timed; the spool's writer thread and
its SQLite writes run during the round (their GIL contention is part of the figure, as
it would be in an application). Also prints the spool writer's throughput: events per
second from the first capture until the spool holds them all, with the server down.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink
from _timing import alternated_us

from posthog_otel import Client

KEY = "phc_bench_key_0123456789"
PROPS = {"plan": "pro", "count": 3, "ok": True, "path": "/checkout"}


def _loop(sink_url: str, spool: str | None):
    def run(n: int) -> None:
        client = Client(KEY, host=sink_url, spool_path=spool, max_queue_size=1_000_000)
        for _ in range(1000):
            client.capture("warm", "u1", PROPS)
        client.flush(30)
        capture = client.capture
        started = time.perf_counter()
        for _ in range(n):
            capture("bench", "u1", PROPS)
        run.elapsed = time.perf_counter() - started  # type: ignore[attr-defined]
        client.close(30)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    n, rounds = (5_000, 3) if args.quick else (20_000, 5)
    tmp = tempfile.mkdtemp()
    with Sink() as sink:
        fns = {
            "memory": _loop(sink.url, None),
            "spool": _loop(sink.url, os.path.join(tmp, "bench.db")),
        }
        # The rounds time fn(n) whole (client built and closed): time the loop alone.
        loop_us: dict[str, list[float]] = {name: [] for name in fns}

        def timed(name: str):
            def run(k: int) -> None:
                fns[name](k)
                loop_us[name].append(fns[name].elapsed / k * 1e6)  # type: ignore[attr-defined]

            return run

        alternated_us({name: timed(name) for name in fns}, n, rounds)
    print(f"## caller-thread µs per client.capture, 4 properties ({n} calls, {rounds} rounds)")
    for name, values in loop_us.items():
        print(f"  {name:7s} best {min(values):6.2f}  median {statistics.median(values):6.2f}")
    ratio = statistics.median(loop_us["spool"]) / statistics.median(loop_us["memory"])
    print(f"  spool / memory (medians): {ratio:.2f}x")

    path = os.path.join(tmp, "throughput.db")
    client = Client(
        KEY,
        host="http://127.0.0.1:9",
        spool_path=path,
        max_queue_size=1_000_000,
        flush_interval=3600,
        flush_at=10**6,
        max_retries=0,
    )
    total = 50_000
    started = time.perf_counter()
    for _ in range(total):
        client.capture("bench", "u1", PROPS)
    conn = sqlite3.connect(path)
    while conn.execute("SELECT count(*) FROM events").fetchone()[0] < total:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    print(f"## spool writer: {total} events written in {elapsed:.2f} s ({total / elapsed:,.0f}/s)")
    client.close(1)


if __name__ == "__main__":
    main()
