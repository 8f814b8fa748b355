"""Spans to PostHog Traces beside OpenTelemetry's own OTLP exporter, in one run (#14).

    python benchmarks/bench_traces.py [--quick] [--rounds N]

The same workload through two pipelines, each a fresh ``TracerProvider`` with a
``BatchSpanProcessor`` (queue large enough for the whole round, so nothing is dropped):

- OpenTelemetry's ``OTLPSpanExporter`` (protobuf over HTTP, gzip), and
- ``instrument_traces``: identity stamping and a ``BatchSpanProcessor`` over
  ``PostHogTraceExporter`` (OTLP/JSON on the client's traces lane, gzip),

both sending to the same local sink (its own process). Each round starts ``n`` spans
with four attributes and ends them, then ``force_flush()`` until the sink has seen all
of them. Reported: delivered spans/s (first span to last acknowledged), process CPU per
delivered span, and the application thread's CPU per span. Targets: ours >= theirs in
spans/s and <= theirs in CPU per span. The rounds alternate their order.
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

from _otlp_sink import OtlpSink

PIPELINES = ("otel OTLPSpanExporter", "posthog_otel instrument_traces")
ATTRIBUTES = {"http.route": "/users/:id", "http.status_code": 200, "user.plan": "pro", "ok": True}


def _pipeline(name: str, url: str, n: int, provider: Any) -> Callable[[], object]:
    """Attach pipeline ``name`` to ``provider``; what closes what it owns."""
    if name.startswith("otel"):
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=Compression.Gzip)
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=n + 1))
        return lambda: None
    from posthog_otel import Client, TracesConfig
    from posthog_otel.otel_traces import instrument_traces

    # The lane's queue as large as the batch processor's: nothing dropped on either side.
    traces = TracesConfig(max_queue_size=n + 1, max_queue_bytes=1 << 30)
    client = Client("phc_benchmark", host=url, flush_interval=60, traces=traces)
    # The documented setup: identity stamping, a BatchSpanProcessor over
    # PostHogTraceExporter, and a force_flush that delivers the lane.
    instrument_traces(provider, client, max_queue_size=n + 1)
    return lambda: client.close(30)


def _round(sink: OtlpSink, name: str, n: int) -> tuple[float, float, float]:
    """(spans/s, process CPU µs per span, application-thread CPU µs per span)."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    close = _pipeline(name, sink.url, n, provider)
    tracer = provider.get_tracer("bench")
    sink.reset()
    gc.collect()
    cpu, thread_cpu, started = time.process_time(), time.thread_time(), time.perf_counter()
    for _ in range(n):
        with tracer.start_as_current_span("GET /users/:id", attributes=ATTRIBUTES):
            pass
    caller = time.thread_time() - thread_cpu
    provider.force_flush(120_000)  # delivered when it returns, in both pipelines
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert sink.count == n, f"{name}: the sink saw {sink.count} of {n} spans"
    provider.shutdown()
    close()
    return n / elapsed, cpu / n * 1e6, caller / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    n = 5_000 if args.quick else 30_000
    median = statistics.median
    with OtlpSink() as sink:
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in PIPELINES}
        for index in range(args.rounds):
            order = PIPELINES if index % 2 == 0 else tuple(reversed(PIPELINES))
            for name in order:
                results[name].append(_round(sink, name, n))
    print(f"## {n:,} spans through BatchSpanProcessor (median of {args.rounds} rounds)")
    for name, values in results.items():
        print(
            f"  {name:36s} {median(v[0] for v in values):8.0f} spans/s;"
            f" process CPU {median(v[1] for v in values):6.2f} µs/span;"
            f" application thread {median(v[2] for v in values):6.2f} µs/span"
        )
    theirs, ours = (results[name] for name in PIPELINES)
    print(
        f"  ratio spans/s ours/theirs: {median(v[0] for v in ours) / median(v[0] for v in theirs):.2f}x;"
        f" CPU per span theirs/ours: {median(v[1] for v in theirs) / median(v[1] for v in ours):.2f}x"
    )


if __name__ == "__main__":
    main()
