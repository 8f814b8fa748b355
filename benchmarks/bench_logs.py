"""PostHog Logs (issue #14, "Speed"): ``logger.info(...)`` through three pipelines, in one
run, against the same local sink.

    python benchmarks/bench_logs.py [--quick] [--n 5000] [--rounds 5] [--records 20000]

- ``PostHogHandler(client, logs=True)``: each record to the client's logs lane (OTLP/JSON,
  gzip, ``/i/v1/logs``);
- a do-nothing ``logging.Handler`` (the floor);
- OpenTelemetry's own pipeline: the SDK's ``LoggingHandler`` + ``BatchLogRecordProcessor``
  + ``OTLPLogExporter`` (``opentelemetry-exporter-otlp-proto-http``: protobuf, gzip).

The record: ``log.info("cache %s warmed in %d ms", "eu", 12, extra={3 attributes})`` with
no distinct id (so ``PostHogHandler`` sends a log record and no analytics event).

Caller-thread cost: mean µs per ``log.info`` over ``--n`` calls, ``--rounds`` rounds, the
three loops alternating (A B C, C B A, ...), each pipeline flushed (untimed) after its
round. Delivered records/s: ``--records`` calls on a fresh pipeline, then a flush; the
rate is records over the time from the first call until the sink counted the last one,
with the process CPU (every thread) per record; three rounds, alternated. Queues are
sized so neither pipeline drops (OpenTelemetry's ``max_queue_size`` and ours, and our
rate cap off); batch sizes are each library's default (OpenTelemetry 512 per request
every second or when full, ours 500 per request from 100 queued).

The sink runs in its own process and counts log records: ``"observedTimeUnixNano"`` in
our JSON, the parsed ``ExportLogsServiceRequest`` for OpenTelemetry's protobuf.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _otlp_sink import OtlpSink as Sink
from _timing import alternated_us

from posthog_otel import Client, LogsConfig, PostHogHandler

ARGS = ("eu", 12)
EXTRA = {"region": "eu-west-1", "attempt": 2, "cache": "redis"}


# ---------------------------------------------------------------------- the pipelines


class DoNothingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


class Pipeline:
    """A ``logging.Logger`` with one handler, its flush and its close."""

    def __init__(
        self, name: str, handler: logging.Handler, flush: Callable[[], object], close: Callable
    ) -> None:
        self.log = logging.getLogger(f"bench.logs.{name}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.addHandler(handler)
        self.handler = handler
        self.flush = flush
        self._close = close

    def run(self, count: int) -> None:
        info, extra = self.log.info, EXTRA
        for _ in range(count):
            info("cache %s warmed in %d ms", *ARGS, extra=extra)

    def close(self) -> None:
        self.log.removeHandler(self.handler)
        self._close()


def posthog_pipeline(url: str, queue: int) -> Pipeline:
    client = Client(
        "phc_bench",
        host=url,
        flush_interval=1.0,
        logs=LogsConfig(max_queue_size=queue, max_logs=0),
    )
    handler = PostHogHandler(client, logs=True)
    return Pipeline("posthog", handler, lambda: client.flush(120), lambda: client.close(120))


def otel_pipeline(url: str, queue: int) -> Pipeline:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider = LoggerProvider()
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_queue_size=queue))
    with warnings.catch_warnings():  # the SDK's LoggingHandler is deprecated, still shipped
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    return Pipeline(
        "otel", handler, lambda: provider.force_flush(120_000), lambda: provider.shutdown()
    )


def null_pipeline(url: str, queue: int) -> Pipeline:
    return Pipeline("null", DoNothingHandler(), lambda: None, lambda: None)


PIPELINES = {
    "do-nothing handler": null_pipeline,
    "PostHogHandler(logs=True)": posthog_pipeline,
    "OTel LoggingHandler + BatchLogRecordProcessor + OTLPLogExporter": otel_pipeline,
}


# ---------------------------------------------------------------------- measures


def caller_cost(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    pipelines = {name: make(url, 10 * n) for name, make in PIPELINES.items()}
    try:
        for pipeline in pipelines.values():  # warm-up, flushed
            pipeline.run(500)
            pipeline.flush()
        return alternated_us(
            {name: p.run for name, p in pipelines.items()},
            n,
            rounds,
            {name: p.flush for name, p in pipelines.items()},
        )
    finally:
        for pipeline in pipelines.values():
            pipeline.close()


def _wait_for(sink: Sink, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urlopen(sink.url) as reply:  # the sink's own count, read over HTTP
            if int(reply.read()) >= count:
                return
        time.sleep(0.002)
    raise TimeoutError(f"the sink saw {sink.count} of {count} records")


def delivery(sink: Sink, name: str, records: int) -> tuple[float, float]:
    """(records/s, process CPU µs per record) for one fresh pipeline."""
    pipeline = PIPELINES[name](sink.url, 2 * records)
    try:
        pipeline.run(200)
        pipeline.flush()
        _wait_for(sink, 200)
        sink.reset()
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        pipeline.run(records)
        pipeline.flush()
        _wait_for(sink, records)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        return records / elapsed, cpu / records * 1e6
    finally:
        pipeline.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.records = 1000, 2, 3000
    with Sink() as sink:
        print(f"caller-thread µs per log.info ({args.rounds} rounds of {args.n}, alternated)")
        cost = caller_cost(sink.url, args.n, args.rounds)
        for name, results in cost.items():
            print(
                f"  {name:66s} best {min(results):6.2f}  median {statistics.median(results):6.2f}"
                f"  rounds {' '.join(f'{r:.2f}' for r in results)}"
            )
        print(f"delivered records/s ({args.records} records, 3 rounds alternated)")
        names = [n for n in PIPELINES if n != "do-nothing handler"]
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for index in range(3):
            for name in names if index % 2 == 0 else reversed(names):
                sink.reset()
                rates[name].append(delivery(sink, name, args.records))
        for name, results in rates.items():
            per_s = [r for r, _ in results]
            cpu = [c for _, c in results]
            print(
                f"  {name:66s} median {statistics.median(per_s):9,.0f}/s"
                f"  rounds {' '.join(f'{r:,.0f}' for r in per_s)}"
                f"  CPU/record median {statistics.median(cpu):.1f} µs"
            )


if __name__ == "__main__":
    main()
