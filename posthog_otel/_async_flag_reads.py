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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._flag_reads import UNKNOWN, FlagReadOptions, FlagReads
from .flags import FlagEvaluations, FlagResult, FlagValue

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AsyncFlagMethods"]

T = TypeVar("T")


async def _on_a_worker(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a worker thread (``asyncio.to_thread``: the loop's
    default executor, with the caller's contextvars). Imported here, not with the
    client: a process that never awaits a flag does not import asyncio for it."""
    import asyncio

    return await asyncio.to_thread(fn, *args, **kwargs)


class AsyncFlagMethods:
    """The async flag methods of ``Client`` (over its ``FlagReads``): ``aget_feature_flag``
    and friends take the sync methods' arguments."""

    _flag_reads: FlagReads

    async def aget_feature_flag_result(
        self, key: str, distinct_id: object = None, **options: Unpack[FlagReadOptions]
    ) -> FlagResult | None:
        """``get_feature_flag_result`` that never blocks the event loop."""
        reads = self._flag_reads
        if reads.answers_now(options):
            if options.get("only_evaluate_locally") or reads.disabled:
                return reads.result(key, distinct_id, **options)
            others: Any = options
            if "only_evaluate_locally" in options:  # (False, given explicitly)
                others = {k: v for k, v in options.items() if k != "only_evaluate_locally"}
            result = reads.result(key, distinct_id, only_evaluate_locally=True, **others)
            if result is not None:
                return result
        return await _on_a_worker(reads.result, key, distinct_id, **options)

    async def aget_feature_flag(
        self, key: str, distinct_id: object = None, **options: Unpack[FlagReadOptions]
    ) -> FlagValue | None:
        """``get_feature_flag`` that never blocks the event loop."""
        result = await self.aget_feature_flag_result(key, distinct_id, **options)
        return None if result is None else result.get_value()

    async def ais_feature_enabled(
        self,
        key: str,
        distinct_id: object = None,
        *,
        default_value: bool = False,
        **options: Unpack[FlagReadOptions],
    ) -> bool:
        """``is_feature_enabled`` that never blocks the event loop."""
        result = await self.aget_feature_flag_result(key, distinct_id, **options)
        return default_value if result is None else result.enabled

    async def aget_feature_flag_payload(
        self,
        key: str,
        distinct_id: object = None,
        *,
        match_value: FlagValue | None = None,
        **options: Unpack[FlagReadOptions],
    ) -> Any:
        """``get_feature_flag_payload`` that never blocks the event loop."""
        reads = self._flag_reads
        if reads.answers_now(options):
            payload = reads.payload(key, distinct_id, match_value, options, True)
            if payload is not UNKNOWN:
                return payload
        return await _on_a_worker(reads.payload, key, distinct_id, match_value, options)

    async def aevaluate_flags(
        self,
        distinct_id: object = None,
        *,
        flag_keys: Sequence[str] | None = None,
        **options: Unpack[FlagReadOptions],
    ) -> FlagEvaluations:
        """``evaluate_flags`` that never blocks the event loop."""
        reads = self._flag_reads
        local = reads.complete_locally(distinct_id, flag_keys, options)
        if local is not None:
            return reads.snapshot(*local, options)
        return await _on_a_worker(reads.evaluate, distinct_id, flag_keys, options)

    async def aget_all_flags(
        self, distinct_id: object = None, **options: Any
    ) -> dict[str, FlagValue]:
        """``get_all_flags`` that never blocks the event loop."""
        reads = self._flag_reads
        local = reads.complete_locally(distinct_id, options.get("flag_keys"), options)
        if local is not None:
            return {k: r.get_value() for k, r in local[1].items()}
        return await _on_a_worker(reads.all_flags, distinct_id, options)
