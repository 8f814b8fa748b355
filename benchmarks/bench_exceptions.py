"""Caller-thread cost of error tracking (issue #12), in one run:

    python benchmarks/bench_exceptions.py [--quick]

- ``logger.exception("payment_failed", extra={distinct_id, 2 properties})`` inside an
  ``except`` block, through ``PostHogHandler`` (which sends the ``$exception`` and the
  plain event) vs the same call with a do-nothing ``logging.Handler`` (aim: ≤ 2x);
- ``client.capture_exception(exc, distinct_id)`` vs posthog's ``capture_exception``
  (aim: ours ≥ 5x faster: source files are read and the event built on the flush
  thread).

Every call raises a new exception with its own message (storm protection would
otherwise suppress the repeats, and posthog sends an exception object once), three
frames deep. Each figure is the best mean over rounds; both clients send to a sink in
another process and are flushed (untimed) between rounds, with ``flush_at`` above the
call count so only the caller's work is timed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink
from _timing import best_us

from posthog_otel import Client, PostHogHandler


class DoNothingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


def _charge(order: int) -> None:
    _authorize(order)


def _authorize(order: int) -> None:
    raise ValueError(f"card declined for order {order}")


def logging_cost(url: str, n: int, rounds: int) -> dict[str, float]:
    extra = {"distinct_id": "user-1", "plan": "pro", "seats": 3}
    out = {}

    def measure(handler: logging.Handler, name: str, client: Client | None = None) -> float:
        log = logging.getLogger(f"bench.exc.{name}")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        counter = [0]

        def run(count: int) -> None:
            exception = log.exception
            start = counter[0]
            counter[0] += count
            for i in range(start, start + count):
                try:
                    _charge(i)
                except ValueError:
                    exception("payment_failed", extra=extra)

        try:
            return best_us(run, n, rounds, None if client is None else lambda: client.flush(60))
        finally:
            log.removeHandler(handler)

    out["do-nothing handler"] = measure(DoNothingHandler(), "null")
    client = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n)
    out["PostHogHandler"] = measure(PostHogHandler(client), "ours", client)
    only = PostHogHandler(client, event_with_exception=False)
    out["PostHogHandler, $exception only"] = measure(only, "only", client)
    client.close(60)
    return out


def capture_cost(url: str, n: int, rounds: int) -> dict[str, float]:
    from posthog import Posthog

    out = {}
    ours = Client("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n)
    theirs = Posthog("phc_bench", host=url, flush_at=10 * n, max_queue_size=10 * n)
    counter = [0]

    def run_with(capture):  # type: ignore[no-untyped-def]
        def run(count: int) -> None:
            start = counter[0]
            counter[0] += count
            for i in range(start, start + count):
                try:
                    _charge(i)
                except ValueError as exc:
                    capture(exc, distinct_id="user-1")

        return run

    out["posthog 7.91.1 capture_exception"] = best_us(
        run_with(theirs.capture_exception), n, rounds, theirs.flush
    )
    out["posthog-otel capture_exception"] = best_us(
        run_with(ours.capture_exception), n, rounds, lambda: ours.flush(60)
    )
    theirs.shutdown()
    ours.close(60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    n, rounds = (2_000, 3) if args.quick else (10_000, 5)
    with Sink() as sink:
        logs = logging_cost(sink.url, n, rounds)
        captures = capture_cost(sink.url, n, rounds)
    for label, us in logs.items():
        print(f"logger.exception, {label}: {us:.2f} µs")
    base = logs["do-nothing handler"]
    print(f"  ratio PostHogHandler / do-nothing: {logs['PostHogHandler'] / base:.2f}x")
    print(
        "  ratio PostHogHandler ($exception only) / do-nothing: "
        f"{logs['PostHogHandler, $exception only'] / base:.2f}x"
    )
    for label, us in captures.items():
        print(f"{label}: {us:.2f} µs")
    theirs = captures["posthog 7.91.1 capture_exception"]
    ours = captures["posthog-otel capture_exception"]
    print(f"  posthog / posthog-otel: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
