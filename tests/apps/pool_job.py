"""A ``multiprocessing.Pool`` (fork) job whose children capture and never flush: ended by
``close()``/``join()`` (the children run multiprocessing's finalizers, not atexit) or by
the ``with`` block (``terminate()``: the children get SIGTERM)."""

from __future__ import annotations

import multiprocessing
import os
import sys

from posthog_otel import Client

client = Client(flush_interval=60.0)  # made in the parent, inherited by the children
PREFIX = os.environ.get("SCENARIO", "pool")


def work(i: int) -> int:
    client.capture("pool_task", f"{PREFIX}-{i}", {"pid": os.getpid()})
    return os.getpid()


if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    count = int(sys.argv[2])
    if sys.argv[1] == "terminate":
        with ctx.Pool(4) as pool:
            pool.map(work, range(count), chunksize=4)
    else:
        pool = ctx.Pool(4)
        pool.map(work, range(count), chunksize=4)
        pool.close()
        pool.join()
