"""Two versions of posthog-otel in one process, their rounds alternated: before/after
figures that a noisy, shared machine cannot skew one way.

    git archive <before-commit> posthog_otel | tar -x -C /tmp/ab
    mv /tmp/ab/posthog_otel /tmp/ab/posthog_otel_before
    PYTHONPATH=.:/tmp/ab python benchmarks/bench_ab.py posthog_otel_before posthog_otel

(The package only uses relative imports, so a renamed copy imports as itself.)

- ``logger.info("user_signed_up", extra={distinct_id + 3 properties})``: a do-nothing
  handler and each version's ``PostHogHandler``, idle then busy flush thread;
- ``enqueue(Capture(...))`` with 4 properties, beside posthog 7.91.1's ``capture()``
  (measured alone first, as in ``bench_client.py``);
- local flag reads, ``get_feature_flag(key, id, person_properties=...,
  only_evaluate_locally=True, send_feature_flag_events=False)`` over 1,000 rotating ids,
  for each flag of ``bench_flags.py``, and ``get_all_flags`` over its 20 flags.

Every round is 20,000 calls; each client is flushed, untimed, after its round. Prints
the best and the median round.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sink import Sink

N = 20_000
EXTRA = {"distinct_id": "user-1", "plan": "pro", "seats": 3, "source": "bench"}
PROPS = {"plan": "pro", "seats": 3, "trial": False, "source": "bench"}


class DoNothingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


def _timed(run: Callable[[], None]) -> float:
    gc.collect()
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / N * 1e6


def _report(label: str, results: dict[str, list[float]], base: str) -> None:
    for name, rounds in results.items():
        ratio = min(rounds) / min(results[base])
        print(
            f"  {label} {name:28s} best {min(rounds):6.2f} µs, median "
            f"{statistics.median(rounds):6.2f} µs ({ratio:.2f}x {base}, best rounds)"
        )


def handlers(url: str, versions: dict[str, ModuleType], rounds: int, busy: bool) -> None:
    entries: dict[str, tuple[logging.Logger, Any]] = {}
    for name, module in {"do-nothing": None, **versions}.items():
        log = logging.getLogger(f"bench_ab.{name}.{busy}")
        log.propagate = False
        log.setLevel(logging.INFO)
        client = None
        if module is None:
            log.addHandler(DoNothingHandler())
        else:
            options = {} if busy else {"flush_at": 10 * N}
            client = module.Client("phc_bench", host=url, max_queue_size=10 * N, **options)
            log.addHandler(module.PostHogHandler(client))
        entries[name] = (log, client)
    results: dict[str, list[float]] = {name: [] for name in entries}
    for _ in range(rounds):
        for name, (log, client) in entries.items():

            def run(info: Callable[..., None] = log.info) -> None:
                for _ in range(N):
                    info("user_signed_up", extra=EXTRA)

            results[name].append(_timed(run))
            if client is not None:
                client.flush(60)
    _report("busy" if busy else "idle", results, "do-nothing")
    for _, client in entries.values():
        if client is not None:
            client.close(30)


def captures(url: str, versions: dict[str, ModuleType], rounds: int) -> None:
    from posthog import Posthog

    theirs = Posthog("phc_bench", host=url, max_queue_size=10_000_000, flush_at=1000)
    results: dict[str, list[float]] = {"posthog capture()": []}
    for _ in range(5):

        def run_theirs(capture: Callable[..., Any] = theirs.capture) -> None:
            for _ in range(N):
                capture("bench_event", distinct_id="user-1", properties=PROPS)

        results["posthog capture()"].append(_timed(run_theirs))
        theirs.flush()
    theirs.shutdown()
    clients = {
        name: module.Client("phc_bench", host=url, flush_at=1000, max_queue_size=10_000_000)
        for name, module in versions.items()
    }
    for name in versions:
        results[name] = []
    for _ in range(rounds):
        for name, module in versions.items():
            client = clients[name]

            def run(enqueue: Callable[..., Any] = client.enqueue, m: Any = module) -> None:
                for _ in range(N):
                    enqueue(m.Capture("bench_event", "user-1", PROPS))

            results[name].append(_timed(run))
            client.flush(60)
    best = min(results["posthog capture()"])
    for name, rounds_us in results.items():
        print(
            f"  enqueue {name:28s} best {min(rounds_us):6.2f} µs, median "
            f"{statistics.median(rounds_us):6.2f} µs (posthog is {best / min(rounds_us):.1f}x)"
        )
    for client in clients.values():
        client.close(30)


def flags(versions: dict[str, ModuleType], rounds: int) -> None:
    from bench_flags import ALL_FLAGS, FLAGS, PROPS, definitions

    ids = [f"user-{i}" for i in range(1000)]
    fake = importlib.import_module(f"{next(iter(versions))}.testing").FakePostHog
    for label, defs, n in (
        ("get_feature_flag", definitions(list(FLAGS.values())), N),
        ("get_all_flags (20 flags)", definitions(ALL_FLAGS), N // 10),
    ):
        with fake(flag_definitions=defs) as server:
            clients = {
                name: module.Client("phc_bench", host=server.url, secret_key="phs_bench")
                for name, module in versions.items()
            }
            for client in clients.values():
                client.reload_feature_flags()
            keys = list(enumerate(FLAGS)) if label == "get_feature_flag" else [(None, "")]
            for index, flag in keys:
                results: dict[str, list[float]] = {name: [] for name in versions}
                for round_index in range(rounds):
                    order = list(versions) if round_index % 2 == 0 else list(reversed(versions))
                    for name in order:
                        client = clients[name]
                        if index is None:

                            def run(
                                get: Callable[..., Any] = client.get_all_flags, n: int = n
                            ) -> None:
                                for i in range(n):
                                    get(
                                        ids[i % 1000],
                                        person_properties=PROPS,
                                        only_evaluate_locally=True,
                                    )
                        else:

                            def run(
                                get: Callable[..., Any] = client.get_feature_flag,
                                key: str = f"flag-{index}",
                            ) -> None:
                                for i in range(N):
                                    get(
                                        key,
                                        ids[i % 1000],
                                        person_properties=PROPS,
                                        only_evaluate_locally=True,
                                        send_feature_flag_events=False,
                                    )

                        gc.collect()
                        started = time.perf_counter()
                        run()
                        results[name].append((time.perf_counter() - started) / n * 1e6)
                base = next(iter(versions))
                for name, values in results.items():
                    print(
                        f"  {label} {flag:34s} {name:22s} best {min(values):7.2f} µs, median "
                        f"{statistics.median(values):7.2f} µs "
                        f"({min(values) / min(results[base]):.2f}x {base}, best rounds)"
                    )
            for client in clients.values():
                client.close(5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("packages", nargs="+", help="importable names of the versions")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", choices=("handler", "enqueue", "flags"))
    args = parser.parse_args()
    logging.disable(logging.NOTSET)
    versions = {name: importlib.import_module(name) for name in args.packages}
    with Sink() as sink:
        if args.only in (None, "handler"):
            print("## logger.info(..., extra={distinct_id + 3 properties}), µs per call")
            handlers(sink.url, versions, args.rounds, busy=False)
            handlers(sink.url, versions, args.rounds, busy=True)
        logging.disable(logging.WARNING)
        if args.only in (None, "enqueue"):
            print("## enqueue(Capture(...)) with 4 properties, µs per call")
            captures(sink.url, versions, args.rounds)
        if args.only in (None, "flags"):
            print("## local flag reads, µs per call (rounds alternated)")
            flags(versions, min(args.rounds, 5))


if __name__ == "__main__":
    main()
