"""Caller-thread cost of the integrations, side by side with their do-nothing baselines.

    python benchmarks/bench_integrations.py [--quick]

- ``logger.info(..., extra={distinct_id, 3 properties})`` with ``PostHogHandler`` vs the
  same call with a do-nothing ``logging.Handler`` (target: at most 1.4x).
- a structlog chain with and without ``PostHogProcessor``.
- ``PostHogSpanExporter.export`` per span vs OpenTelemetry's ``InMemorySpanExporter``.

Each figure is the best mean over rounds. "idle flush thread" runs with ``flush_at`` above
the call count, so only the caller's work is timed; "busy flush thread" uses the default
``flush_at=100``, so the flush thread builds and sends events meanwhile and competes for
the GIL, as in an application under load.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink
from _timing import best_us

from posthog_otel import Client, PostHogHandler, PostHogProcessor


class DoNothingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


def logging_cost(url: str, n: int, rounds: int) -> dict[str, float]:
    extra = {"distinct_id": "user-1", "plan": "pro", "seats": 3, "source": "bench"}
    out = {}

    def measure(handler: logging.Handler, name: str) -> float:
        log = logging.getLogger(f"bench.{name}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)

        def run(count: int) -> None:
            info = log.info
            for _ in range(count):
                info("user_signed_up", extra=extra)

        try:
            return best_us(run, n, rounds)
        finally:
            log.removeHandler(handler)

    out["do-nothing handler"] = measure(DoNothingHandler(), "null")
    idle = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n * rounds)
    out["PostHogHandler, idle flush thread"] = measure(PostHogHandler(idle), "idle")
    idle.close(60)
    busy = Client("phc_bench", host=url, max_queue_size=10 * n * rounds)
    out["PostHogHandler, busy flush thread"] = measure(PostHogHandler(busy), "busy")
    busy.close(60)
    return out


def structlog_cost(url: str, n: int, rounds: int) -> dict[str, float]:
    import structlog

    out = {}
    client = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n * rounds)
    for label, extra in (("without PostHogProcessor", []), ("with PostHogProcessor", [1])):
        processors: list = [structlog.processors.add_log_level]
        if extra:
            processors.append(PostHogProcessor(client))
        processors.append(lambda logger, method, event_dict: "")
        structlog.configure(
            processors=processors,
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=True,
        )
        log = structlog.get_logger()

        def run(count: int, log=log) -> None:
            for _ in range(count):
                log.info("user_signed_up", distinct_id="user-1", plan="pro", seats=3)

        out[label] = best_us(run, n, rounds)
    client.close(60)
    structlog.reset_defaults()
    return out


def span_cost(url: str, n: int, rounds: int) -> dict[str, float]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from posthog_otel import PostHogSpanExporter

    tracer = TracerProvider().get_tracer("bench")
    spans = []
    for i in range(1000):
        with tracer.start_as_current_span(
            "checkout", attributes={"user.id": f"u{i}", "cart.items": 3, "plan": "pro"}
        ) as span:
            pass
        spans.append(span)
    client = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n * rounds)
    ours = PostHogSpanExporter(client)
    memory = InMemorySpanExporter()

    def run_with(exporter):  # type: ignore[no-untyped-def]
        def run(count: int) -> None:
            for i in range(count):
                exporter.export((spans[i % 1000],))
            if exporter is memory:
                memory.clear()

        return run

    out = {
        "InMemorySpanExporter.export": best_us(run_with(memory), n, rounds),
        "PostHogSpanExporter.export": best_us(run_with(ours), n, rounds),
    }
    client.close(60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (5_000, 3) if args.quick else (50_000, 7)
    logging.disable(logging.NOTSET)
    with Sink() as sink:
        print("## logger.info(..., extra={distinct_id + 3 properties}) (µs per call)")
        costs = logging_cost(sink.url, n, rounds)
        for name, value in costs.items():
            print(f"  {name:40s} {value:7.2f} µs")
        base = costs["do-nothing handler"]
        for name in ("PostHogHandler, idle flush thread", "PostHogHandler, busy flush thread"):
            print(f"  ratio {name} / do-nothing: {costs[name] / base:.2f}x")
        print("## structlog log.info with 3 keys (µs per call)")
        costs = structlog_cost(sink.url, n, rounds)
        for name, value in costs.items():
            print(f"  {name:40s} {value:7.2f} µs")
        overhead = costs["with PostHogProcessor"] - costs["without PostHogProcessor"]
        print(f"  PostHogProcessor overhead: {overhead:.2f} µs per event")
        print("## span export (µs per span)")
        costs = span_cost(sink.url, n, rounds)
        for name, value in costs.items():
            print(f"  {name:40s} {value:7.2f} µs")


if __name__ == "__main__":
    main()
