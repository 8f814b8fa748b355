"""Flag reads for ``async def`` code: ``Client.aget_feature_flag`` and friends.

A read that local evaluation answers runs right here, on the event loop's thread, with
no thread hop: it costs what the sync read costs plus the ``await``. A read that may
block (a ``/flags`` request, or the first read's bounded wait for the definitions) runs
the sync read on a worker thread through ``asyncio.to_thread``: the event loop's default
executor, with the caller's contextvars, so the identity context and its overrides hold
there too. The loop goes on serving other requests meanwhile.

Why a worker thread and not httpx's ``AsyncClient``: the sync read path is the one
that is tested against posthog (retries, deadlines, the result cache, exposures, the
first-load wait), and a second, async copy of it would drift; an ``AsyncClient`` is
bound to one event loop and would double the connection pools and their fork handling.
A remote read is network-bound, so a thread per read in flight costs little.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ._flag_reads import UNKNOWN, FlagReadOptions, FlagReads
from .flags import FlagEvaluations, FlagResult, FlagValue

__all__ = ["AsyncFlagReads"]


class AsyncFlagReads:
    """What ``Client``'s ``a*`` flag methods delegate to."""

    def __init__(self, reads: FlagReads) -> None:
        self._reads = reads

    async def result(
        self, key: str, distinct_id: object, options: FlagReadOptions
    ) -> FlagResult | None:
        reads = self._reads
        if reads.answers_now(options):
            result = reads.result(key, distinct_id, options, True)
            if result is not None or options.get("only_evaluate_locally") or reads.disabled:
                return result
        return await asyncio.to_thread(reads.result, key, distinct_id, options)

    async def payload(
        self, key: str, distinct_id: object, match_value: FlagValue | None, options: FlagReadOptions
    ) -> Any:
        reads = self._reads
        if reads.answers_now(options):
            payload = reads.payload(key, distinct_id, match_value, options, True)
            if payload is not UNKNOWN:
                return payload
        return await asyncio.to_thread(reads.payload, key, distinct_id, match_value, options)

    async def evaluate(
        self, distinct_id: object, flag_keys: Sequence[str] | None, options: FlagReadOptions
    ) -> FlagEvaluations:
        reads = self._reads
        local = reads.complete_locally(distinct_id, flag_keys, options)
        if local is not None:
            return reads.snapshot(*local, options)
        return await asyncio.to_thread(reads.evaluate, distinct_id, flag_keys, options)

    async def all_flags(
        self, distinct_id: object, options: Mapping[str, Any]
    ) -> dict[str, FlagValue]:
        reads = self._reads
        local = reads.complete_locally(distinct_id, options.get("flag_keys"), options)
        if local is not None:
            return {k: r.get_value() for k, r in local[1].items()}
        return await asyncio.to_thread(reads.all_flags, distinct_id, options)
