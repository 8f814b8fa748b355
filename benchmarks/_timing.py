"""Shared by the benchmarks: the best mean time per call over rounds."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def best_us(fn: Callable[[int], None], n: int, rounds: int) -> float:
    """Best mean µs per call over ``rounds`` runs of ``fn(n)`` (n calls each)."""
    results = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        fn(n)
        results.append((time.perf_counter() - started) / n * 1e6)
    return min(results)
