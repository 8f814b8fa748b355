"""Capture v1 and LLM analytics beside posthog 7.91.1, in one run (issue #15, "Speed").

    python benchmarks/bench_capture_modes.py [--quick]

1. Delivery: events/s and process CPU per delivered event of ``n`` captures sent 100 per
   request (gzip on) by a fresh client, from the first capture to the last acknowledged
   request, for posthog in v1 mode and posthog-otel in v1 and v0 mode (target: ours in v1
   at >= 5x posthog's v1 events/s, as in v0).
2. ``capture_ai``: the caller-thread cost of one ``$ai_generation`` with a small prompt
   and completion, posthog's ``capture_ai`` beside ours.

The rounds alternate their order (A B C, C B A, ...). The sink answers 200 with a body
that is not the v1 results protocol, which both libraries read as "every event accepted".
Absolute numbers vary between machines; the ratios are the point.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink
from bench_client import PROPS, _order, _ours, _theirs

AI_PROPS = {
    "$ai_model": "gpt-4o-mini",
    "$ai_provider": "openai",
    "$ai_input": [{"role": "user", "content": "What is the capital of France?"}],
    "$ai_output_choices": [{"role": "assistant", "content": "Paris."}],
    "$ai_input_tokens": 14,
    "$ai_output_tokens": 2,
    "$ai_latency": 0.42,
    "$ai_trace_id": "0af7651916cd43dd8448eb211c80319c",
}
DELIVERY = ("posthog v1", "posthog_otel v1", "posthog_otel v0")


def _deliver(sink: Sink, name: str, n: int) -> tuple[float, float]:
    """(events/s, process CPU µs per event) of ``n`` captures delivered 100 per request."""
    mode = name.split()[1]
    if name.startswith("posthog "):
        client: Any = _theirs(sink.url, gzip=True, max_queue_size=n + 1, capture_mode=mode)

        def run() -> None:
            for _ in range(n):
                client.capture("bench_event", distinct_id="user-1", properties=PROPS)

        finish: Callable[[], object] = client.shutdown
    else:
        client = _ours(sink.url, max_queue_size=n + 1, flush_at=100, capture_mode=mode)

        def run() -> None:
            for _ in range(n):
                client.capture("bench_event", "user-1", PROPS)

        finish = client.close
    sink.reset()
    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    run()
    finish()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert sink.count == n, f"{name}: the sink saw {sink.count} of {n} events"
    return n / elapsed, cpu / n * 1e6


def _capture_ai_cost(sink: Sink, name: str, n: int) -> float:
    """µs per ``capture_ai`` call on the caller's thread (after a flushed warm-up)."""
    if name == "posthog":
        client: Any = _theirs(sink.url, max_queue_size=10_000_000)

        def run(count: int) -> None:
            for _ in range(count):
                client.capture_ai("$ai_generation", distinct_id="user-1", properties=AI_PROPS)

        finish: Callable[[], object] = client.shutdown
    else:
        client = _ours(sink.url, max_queue_size=10_000_000)

        def run(count: int) -> None:
            for _ in range(count):
                client.capture_ai("$ai_generation", "user-1", AI_PROPS)

        finish = client.close
    run(1000)
    client.flush()
    gc.collect()
    started = time.perf_counter()
    run(n)
    cost = (time.perf_counter() - started) / n * 1e6
    finish()
    return cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    n = 5_000 if args.quick else 50_000
    with Sink() as sink:
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in DELIVERY}
        for index in range(args.rounds):
            for name in _order(DELIVERY, index):
                rates[name].append(_deliver(sink, name, n))
        print(f"## delivery of {n:,} captures, 100 per request, gzip (median of {args.rounds})")
        median = statistics.median
        for name, values in rates.items():
            print(
                f"  {name:16s} {median(v[0] for v in values):9.0f} events/s;"
                f" process CPU {median(v[1] for v in values):6.2f} µs/event"
            )
        theirs = median(v[0] for v in rates["posthog v1"])
        for name in DELIVERY[1:]:
            ours = median(v[0] for v in rates[name])
            print(f"  ratio {name} / posthog v1 events/s: {ours / theirs:.1f}x")
        costs: dict[str, list[float]] = {"posthog": [], "posthog_otel": []}
        for index in range(args.rounds):
            for name in _order(list(costs), index):
                costs[name].append(_capture_ai_cost(sink, name, n // 5))
        print("## capture_ai caller-thread cost, one $ai_generation (µs; best, median)")
        for name, values in costs.items():
            print(f"  {name:16s} best {min(values):6.2f}, median {median(values):6.2f}")
        ratio = median(costs["posthog"]) / median(costs["posthog_otel"])
        print(f"  ratio posthog / posthog_otel: {ratio:.1f}x (medians)")


if __name__ == "__main__":
    main()
