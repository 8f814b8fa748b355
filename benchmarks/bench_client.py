"""posthog-otel against the official posthog 7.91.1, side by side in one run.

    python benchmarks/bench_client.py [--quick] [--caller-only | --throughput-only]

Prints the caller-thread cost of a capture with 4 properties, events/s delivered to a
local sink and the process CPU each delivered event cost (both libraries at 100 and at
1,000 events per request, gzip on and off), RSS with the server down after 1M
enqueues, and import time, each as a ratio. The two libraries' rounds alternate (A B,
B A, ...). Absolute numbers vary between machines; the ratios are the point.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink

API_KEY = "phc_benchmark"
PROPS = {"plan": "pro", "seats": 3, "trial": False, "source": "bench"}
LIBRARIES = ("posthog", "posthog_otel")


def _ours(host: str, **kwargs: object):  # type: ignore[no-untyped-def]
    from posthog_otel import Client

    return Client(API_KEY, host=host, **kwargs)  # type: ignore[arg-type]


def _theirs(host: str, **kwargs: object):  # type: ignore[no-untyped-def]
    from posthog import Posthog

    return Posthog(API_KEY, host=host, **kwargs)  # type: ignore[arg-type]


def _order(names: tuple[str, ...] | list[str], index: int) -> list[str]:
    """Round ``index``'s order: as given, then reversed, and so on."""
    return list(names) if index % 2 == 0 else list(reversed(names))


def caller_cost(sink: Sink, n: int, rounds: int) -> dict[str, list[float]]:
    """µs per call of each round. Each round builds a fresh client (after a warm-up of
    1,000 calls, flushed) and shuts it down afterwards, so only one library's background
    thread exists while a loop is timed; that thread still works during the round, as it
    would in an application. The order of the three loops alternates between rounds."""
    from posthog_otel import Capture

    def run_theirs(client: Any, count: int) -> None:
        capture = client.capture
        for _ in range(count):
            capture("bench_event", distinct_id="user-1", properties=PROPS)

    def run_enqueue(client: Any, count: int) -> None:
        enqueue = client.enqueue
        for _ in range(count):
            enqueue(Capture("bench_event", "user-1", PROPS))

    def run_capture(client: Any, count: int) -> None:
        capture = client.capture
        for _ in range(count):
            capture("bench_event", "user-1", PROPS)

    loops: dict[str, tuple[Callable[..., Any], Callable[[Any, int], None]]] = {
        "posthog capture()": (
            lambda: _theirs(sink.url, max_queue_size=10_000_000, flush_at=1000),
            run_theirs,
        ),
        "posthog_otel enqueue(Capture)": (
            lambda: _ours(sink.url, max_queue_size=10_000_000, flush_at=1000),
            run_enqueue,
        ),
        "posthog_otel capture()": (
            lambda: _ours(sink.url, max_queue_size=10_000_000, flush_at=1000),
            run_capture,
        ),
    }
    out: dict[str, list[float]] = {name: [] for name in loops}
    for index in range(rounds):
        for name in _order(list(loops), index):
            make, run = loops[name]
            client = make()
            run(client, 1000)
            client.flush()
            gc.collect()
            started = time.perf_counter()
            run(client, n)
            out[name].append((time.perf_counter() - started) / n * 1e6)
            client.flush()
            if name.startswith("posthog_otel"):
                client.close(30)
            else:
                client.shutdown()
    return out


def _deliver(sink: Sink, name: str, n: int, batch: int, gzip: bool) -> tuple[float, float, float]:
    """(events/s, process CPU µs per event, caller-thread CPU µs per capture) of ``n``
    captures delivered by a fresh client sending ``batch`` events per request: from the
    first capture to the last acknowledged batch (``shutdown()``/``close()`` returned)."""
    if name == "posthog":
        client = _theirs(sink.url, gzip=gzip, max_queue_size=n + 1, flush_at=batch)
        capture = client.capture

        def run() -> None:
            for _ in range(n):
                capture("bench_event", distinct_id="user-1", properties=PROPS)

        finish = client.shutdown
    else:
        client = _ours(
            sink.url, gzip=gzip, max_queue_size=n + 1, flush_at=batch, max_batch_size=batch
        )
        capture = client.capture

        def run() -> None:
            for _ in range(n):
                capture("bench_event", "user-1", PROPS)

        finish = client.close
    sink.reset()
    gc.collect()
    cpu, thread_cpu, started = time.process_time(), time.thread_time(), time.perf_counter()
    run()
    caller = time.thread_time() - thread_cpu
    finish()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert sink.count == n, f"{name}: sink saw {sink.count} of {n} events"
    return n / elapsed, cpu / n * 1e6, caller / n * 1e6


def throughput(
    sink: Sink, n: int, batch: int, gzip: bool, rounds: int
) -> dict[str, list[tuple[float, float, float]]]:
    out: dict[str, list[tuple[float, float, float]]] = {name: [] for name in LIBRARIES}
    for index in range(rounds):
        for name in _order(LIBRARIES, index):
            out[name].append(_deliver(sink, name, n, batch, gzip))
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
    for which in LIBRARIES:
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


IMPORTS = {
    "import posthog": "import posthog",
    "import posthog_otel": "import posthog_otel",
    "from posthog_otel import Client": "from posthog_otel import Client",
    # Ready to send: posthog imports requests at import time; we import httpx when the
    # first client is created.
    "ready: from posthog import Posthog": "from posthog import Posthog",
    "ready: posthog_otel Client + httpx": "from posthog_otel import Client; import httpx",
}


def import_time(rounds: int) -> dict[str, float]:
    """Median over fresh interpreters; the statements' order alternates between rounds."""
    samples: dict[str, list[float]] = {label: [] for label in IMPORTS}
    for index in range(rounds):
        for label in _order(list(IMPORTS), index):
            code = (
                f"import time; t = time.perf_counter(); {IMPORTS[label]};"
                " print(time.perf_counter() - t)"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
            samples[label].append(float(out))
    return {label: statistics.median(values) * 1000 for label, values in samples.items()}


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _print_caller(cost: dict[str, list[float]]) -> None:
    print("## caller-thread cost of one capture with 4 properties (µs; best, median of rounds)")
    for name, values in cost.items():
        print(f"  {name:32s} best {min(values):7.2f} µs, median {_median(values):7.2f} µs")
    base = cost["posthog capture()"]
    for name in ("posthog_otel enqueue(Capture)", "posthog_otel capture()"):
        print(
            f"  ratio posthog / {name}: {min(base) / min(cost[name]):.1f}x faster (best),"
            f" {_median(base) / _median(cost[name]):.1f}x (median)"
        )


def _print_throughput(rates: dict[str, list[tuple[float, float, float]]]) -> None:
    for name, values in rates.items():
        rate = _median([v[0] for v in values])
        cpu = _median([v[1] for v in values])
        caller = _median([v[2] for v in values])
        each = ", ".join(f"{v[0]:.0f}" for v in values)
        print(
            f"  {name:14s} {rate:9.0f} events/s ({each}); process CPU {cpu:6.2f} µs/event;"
            f" caller thread {caller:6.2f} µs/capture"
        )
    theirs, ours = rates["posthog"], rates["posthog_otel"]
    paired = [o[0] / t[0] for t, o in zip(theirs, ours, strict=True)]
    print(
        f"  ratio events/s: {_median([v[0] for v in ours]) / _median([v[0] for v in theirs]):.1f}x"
        f" (medians; per round {', '.join(f'{p:.1f}' for p in paired)});"
        f" process CPU per event: posthog uses"
        f" {_median([v[1] for v in theirs]) / _median([v[1] for v in ours]):.1f}x ours"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--caller-only", action="store_true", help="only the caller-thread cost (~30 s)"
    )
    parser.add_argument(
        "--throughput-only", action="store_true", help="only the delivery rates (~2 min)"
    )
    parser.add_argument("--batch", type=int, choices=(100, 1000), help="only this batch size")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    n_calls, rounds, n_events, t_rounds, n_mem, n_import = (
        (5_000, 3, 20_000, 2, 100_000, 3) if args.quick else (20_000, 5, 100_000, 3, 1_000_000, 9)
    )
    with Sink() as sink:
        if not args.throughput_only:
            _print_caller(caller_cost(sink, n_calls, rounds))
            if args.caller_only:
                return
        for batch in (100, 1000) if args.batch is None else (args.batch,):
            for gzip in (True, False):
                print(
                    f"## events/s delivered to a local sink, {batch} events per request,"
                    f" gzip={gzip} ({n_events} events; median of {t_rounds} rounds)"
                )
                _print_throughput(throughput(sink, n_events, batch, gzip, t_rounds))
        if args.throughput_only:
            return

    print(f"## RSS with the server down after {n_mem} enqueues (MB before -> after)")
    for name, (before, after, accepted, dropped) in memory(n_mem).items():
        print(
            f"  {name:14s} {before:7.1f} -> {after:7.1f} MB"
            f"  (+{after - before:.1f}); accepted {accepted}, dropped {dropped}"
        )

    print("## import time (ms, median of fresh interpreters)")
    times = import_time(n_import)
    for name, value in times.items():
        print(f"  {name:36s} {value:7.1f} ms")
    print(
        f"  ratio import posthog / import posthog_otel: "
        f"{times['import posthog'] / times['import posthog_otel']:.1f}x; "
        f"/ from posthog_otel import Client: "
        f"{times['import posthog'] / times['from posthog_otel import Client']:.1f}x; "
        f"ready to send: "
        f"{times['ready: from posthog import Posthog'] / times['ready: posthog_otel Client + httpx']:.1f}x"
    )


if __name__ == "__main__":
    main()
