"""Shared by the benchmarks: the best mean time per call over rounds."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def best_us(
    fn: Callable[[int], None],
    n: int,
    rounds: int,
    between: Callable[[], object] | None = None,
) -> float:
    """Best mean µs per call over ``rounds`` runs of ``fn(n)`` (n calls each)."""
    return min(rounds_us(fn, n, rounds, between))


def rounds_us(
    fn: Callable[[int], None],
    n: int,
    rounds: int,
    between: Callable[[], object] | None = None,
) -> list[float]:
    """Mean µs per call of each of ``rounds`` runs of ``fn(n)`` (n calls each).

    ``between`` runs, untimed, after every round (e.g. ``client.flush``), so that each
    round starts from an empty queue: otherwise later rounds time a queue (and a heap the
    garbage collector walks) holding every earlier round's items."""
    results = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        fn(n)
        results.append((time.perf_counter() - started) / n * 1e6)
        if between is not None:
            between()
    return results


def alternated_us(
    fns: dict[str, Callable[[int], None]],
    n: int,
    rounds: int,
    between: dict[str, Callable[[], object]] | None = None,
) -> dict[str, list[float]]:
    """Mean µs per call of each round of each ``fns[name](n)``, the rounds interleaved
    and their order alternated (A B, B A, A B, ...): a machine that slows down or speeds
    up during the run shifts both sides alike instead of the one measured last."""
    names = list(fns)
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            gc.collect()
            started = time.perf_counter()
            fns[name](n)
            results[name].append((time.perf_counter() - started) / n * 1e6)
            if between is not None and name in between:
                between[name]()
    return results
