"""Caller-thread cost of the integrations, side by side with their do-nothing baselines.

    python benchmarks/bench_integrations.py [--quick]

- ``logger.info(..., extra={distinct_id, 3 properties})`` with ``PostHogHandler`` vs the
  same call with a do-nothing ``logging.Handler`` (target: at most 1.4x).
- a structlog chain with and without ``PostHogProcessor``.
- ``PostHogSpanExporter.export`` per span vs OpenTelemetry's ``InMemorySpanExporter``.

Each figure is the best mean over rounds of 20,000 calls; the client is flushed (untimed)
after every round, so each round starts from an empty queue. "idle flush thread" runs
with ``flush_at`` above the call count, so only the caller's work is timed; "busy flush
thread" uses the default ``flush_at=100``, so the flush thread builds and sends events
meanwhile and competes for the GIL, as in an application under load.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink
from _timing import best_us, rounds_us

from posthog_otel import Client, PostHogHandler, PostHogProcessor


class DoNothingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


def logging_cost(url: str, n: int, rounds: int) -> dict[str, tuple[float, float]]:
    """(best, median) mean µs per call over the rounds, per handler."""
    extra = {"distinct_id": "user-1", "plan": "pro", "seats": 3, "source": "bench"}
    out = {}

    def measure(
        handler: logging.Handler, name: str, client: Client | None = None
    ) -> tuple[float, float]:
        log = logging.getLogger(f"bench.{name}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)

        def run(count: int) -> None:
            info = log.info
            for _ in range(count):
                info("user_signed_up", extra=extra)

        try:
            between = None if client is None else lambda: client.flush(60)
            results = rounds_us(run, n, rounds, between)
            return min(results), statistics.median(results)
        finally:
            log.removeHandler(handler)

    out["do-nothing handler"] = measure(DoNothingHandler(), "null")
    idle = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n)
    out["PostHogHandler, idle flush thread"] = measure(PostHogHandler(idle), "idle", idle)
    idle.close(60)
    busy = Client("phc_bench", host=url, max_queue_size=10 * n)
    out["PostHogHandler, busy flush thread"] = measure(PostHogHandler(busy), "busy", busy)
    busy.close(60)
    return out


def structlog_cost(url: str, n: int, rounds: int) -> dict[str, float]:
    import structlog

    out = {}
    client = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n)
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

        out[label] = best_us(run, n, rounds, lambda: client.flush(60))
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
    client = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n)
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
        "PostHogSpanExporter.export": best_us(run_with(ours), n, rounds, lambda: client.flush(60)),
    }
    client.close(60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("logging", "structlog", "spans"))
    args = parser.parse_args()
    n, rounds = (5_000, 3) if args.quick else (20_000, 7)
    logging.disable(logging.NOTSET)
    with Sink() as sink:
        if args.only in (None, "logging"):
            _report_logging(sink.url, n, rounds)
        if args.only in (None, "structlog"):
            _report_structlog(sink.url, n, rounds)
        if args.only in (None, "spans"):
            _report_spans(sink.url, n, rounds)


def _report_logging(url: str, n: int, rounds: int) -> None:
    print("## logger.info(..., extra={distinct_id + 3 properties}) (µs per call)")
    costs = logging_cost(url, n, rounds)
    for name, (best, median) in costs.items():
        print(f"  {name:40s} best {best:7.2f} µs, median round {median:7.2f} µs")
    best, median = costs["do-nothing handler"]
    for name in ("PostHogHandler, idle flush thread", "PostHogHandler, busy flush thread"):
        print(
            f"  ratio {name} / do-nothing: best {costs[name][0] / best:.2f}x,"
            f" median round {costs[name][1] / median:.2f}x"
        )


def _report_structlog(url: str, n: int, rounds: int) -> None:
    print("## structlog log.info with 3 keys (µs per call)")
    costs = structlog_cost(url, n, rounds)
    for name, value in costs.items():
        print(f"  {name:40s} {value:7.2f} µs")
    overhead = costs["with PostHogProcessor"] - costs["without PostHogProcessor"]
    print(f"  PostHogProcessor overhead: {overhead:.2f} µs per event")


def _report_spans(url: str, n: int, rounds: int) -> None:
    print("## span export (µs per span)")
    costs = span_cost(url, n, rounds)
    for name, value in costs.items():
        print(f"  {name:40s} {value:7.2f} µs")


if __name__ == "__main__":
    main()
