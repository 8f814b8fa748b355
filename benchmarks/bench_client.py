"""posthog-otel against the official posthog 7.91.1, side by side in one run.

    python benchmarks/bench_client.py [--quick]

Prints the caller-thread cost of a capture with 4 properties, events/s delivered to a
local sink (gzip on and off), RSS with the server down after 1M enqueues, and import
time, each as a ratio. Absolute numbers vary between machines; the ratios are the point.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink

API_KEY = "phc_benchmark"
PROPS = {"plan": "pro", "seats": 3, "trial": False, "source": "bench"}


def _ours(host: str, **kwargs: object):  # type: ignore[no-untyped-def]
    from posthog_otel import Client

    return Client(API_KEY, host=host, **kwargs)  # type: ignore[arg-type]


def _theirs(host: str, **kwargs: object):  # type: ignore[no-untyped-def]
    from posthog import Posthog

    return Posthog(API_KEY, host=host, **kwargs)  # type: ignore[arg-type]


def caller_cost(sink: Sink, n: int, rounds: int) -> dict[str, float]:
    """Each library measured alone: the other's background thread must not be sending
    (and competing for the GIL) while a loop is timed. After each timed round the client
    is flushed (untimed), so every round starts from an empty queue; its own background
    thread still works during the round, as it would in an application."""
    from posthog_otel import Capture

    def best_of_rounds(run: Callable[[int], None], flush: Callable[[], object]) -> float:
        results = []
        for _ in range(rounds):
            gc.collect()
            started = time.perf_counter()
            run(n)
            results.append((time.perf_counter() - started) / n * 1e6)
            flush()
        return min(results)

    theirs = _theirs(sink.url, max_queue_size=10_000_000, flush_at=1000)

    def run_theirs(count: int) -> None:
        capture = theirs.capture
        for _ in range(count):
            capture("bench_event", distinct_id="user-1", properties=PROPS)

    out = {"posthog capture()": best_of_rounds(run_theirs, theirs.flush)}
    theirs.shutdown()

    ours = _ours(sink.url, max_queue_size=10_000_000, flush_at=1000)

    def run_enqueue(count: int) -> None:
        enqueue = ours.enqueue
        for _ in range(count):
            enqueue(Capture("bench_event", "user-1", PROPS))

    def run_capture(count: int) -> None:
        capture = ours.capture
        for _ in range(count):
            capture("bench_event", "user-1", PROPS)

    out["posthog_otel enqueue(Capture)"] = best_of_rounds(run_enqueue, ours.flush)
    out["posthog_otel capture()"] = best_of_rounds(run_capture, ours.flush)
    ours.close(30)
    return out


def throughput(sink: Sink, n: int, gzip: bool) -> dict[str, float]:
    out = {}
    for name, make, flush in (
        ("posthog", lambda: _theirs(sink.url, gzip=gzip, max_queue_size=n + 1), "shutdown"),
        ("posthog_otel", lambda: _ours(sink.url, gzip=gzip, max_queue_size=n + 1), "close"),
    ):
        client = make()
        sink.reset()
        gc.collect()
        started = time.perf_counter()
        if name == "posthog":
            for _ in range(n):
                client.capture("bench_event", distinct_id="user-1", properties=PROPS)
        else:
            for _ in range(n):
                client.capture("bench_event", "user-1", PROPS)
        getattr(client, flush)()
        elapsed = time.perf_counter() - started
        assert sink.count == n, f"{name}: sink saw {sink.count} of {n} events"
        out[name] = n / elapsed
    return out


_RSS_SCRIPT = textwrap.dedent(
    """
    import logging, resource, sys
    logging.disable(logging.CRITICAL)
    def rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    which, n = sys.argv[1], int(sys.argv[2])
    host = "http://127.0.0.1:9"  # nothing listens: every request is refused
    props = {"plan": "pro", "seats": 3, "trial": False, "source": "bench"}
    if which == "posthog":
        from posthog import Posthog
        client = Posthog("phc_benchmark", host=host)
        before = rss_mb()
        accepted = sum(client.capture("e", distinct_id="u", properties=props) is not None
                       for _ in range(n))
        dropped = n - accepted
    else:
        import httpx  # loaded up front, as posthog loads requests, so "before" is comparable
        from posthog_otel import Client
        client = Client("phc_benchmark", host=host)
        before = rss_mb()
        accepted = sum(client.capture("e", "u", props) is not None for _ in range(n))
        dropped = client.stats.dropped["queue_full"]
        assert accepted + dropped == n, (accepted, dropped)
    print(before, rss_mb(), accepted, dropped)
    import os; os._exit(0)
    """
)


def memory(n: int) -> dict[str, tuple[float, float, int, int]]:
    out = {}
    for which in ("posthog", "posthog_otel"):
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, which, str(n)],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        before, after, accepted, dropped = proc.stdout.split()
        out[which] = (float(before), float(after), int(accepted), int(dropped))
    return out


def import_time(rounds: int) -> dict[str, float]:
    out = {}
    for label, stmt in (
        ("import posthog", "import posthog"),
        ("import posthog_otel", "import posthog_otel"),
        ("from posthog_otel import Client", "from posthog_otel import Client"),
    ):
        code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
        samples = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(rounds)
        ]
        out[label] = statistics.median(samples) * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--caller-only", action="store_true", help="only the caller-thread cost (~20 s)"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    n_calls, rounds, n_events, n_mem, n_import = (
        (5_000, 3, 20_000, 100_000, 3) if args.quick else (20_000, 5, 200_000, 1_000_000, 9)
    )
    with Sink() as sink:
        print("## caller-thread cost of one capture with 4 properties (µs, best of rounds)")
        cost = caller_cost(sink, n_calls, rounds)
        for name, value in cost.items():
            print(f"  {name:32s} {value:8.2f} µs")
        base = cost["posthog capture()"]
        for name in ("posthog_otel enqueue(Capture)", "posthog_otel capture()"):
            print(f"  ratio posthog / {name}: {base / cost[name]:.1f}x faster")
        if args.caller_only:
            return

        for gzip in (True, False):
            print(f"## events/s delivered to a local sink, gzip={gzip} ({n_events} events)")
            rates = throughput(sink, n_events, gzip)
            for name, value in rates.items():
                print(f"  {name:32s} {value:10.0f} events/s")
            print(f"  ratio: {rates['posthog_otel'] / rates['posthog']:.1f}x")

    print(f"## RSS with the server down after {n_mem} enqueues (MB before -> after)")
    for name, (before, after, accepted, dropped) in memory(n_mem).items():
        print(
            f"  {name:14s} {before:7.1f} -> {after:7.1f} MB"
            f"  (+{after - before:.1f}); accepted {accepted}, dropped {dropped}"
        )

    print("## import time (ms, median of fresh interpreters)")
    times = import_time(n_import)
    for name, value in times.items():
        print(f"  {name:32s} {value:7.1f} ms")
    print(
        f"  ratio import posthog / import posthog_otel: "
        f"{times['import posthog'] / times['import posthog_otel']:.1f}x; "
        f"/ from posthog_otel import Client: "
        f"{times['import posthog'] / times['from posthog_otel import Client']:.1f}x"
    )


if __name__ == "__main__":
    main()
