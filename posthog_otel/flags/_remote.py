"""Remote evaluation: ``POST {host}/flags/?v=2``, with the flags retry policy.

Retries only when no answer arrived (except a refused connection) and on 502/504,
after 300 ms, then 600 ms, doubling (``feature_flags_request_max_retries``); every other
status is final. Errors are returned as codes, never raised into the caller.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .._fork import fork_safe_lock
from .._log import logger
from .._serialize import clean, dumps
from ..export import Clock, HttpTransport, TransportError
from ._results import FlagResult, decode_payload, experiment_flag


@dataclass
class RemoteAnswer:
    """The flags of one ``/flags`` response (or the error that prevented it)."""

    flags: dict[str, FlagResult] = field(default_factory=dict)
    request_id: str | None = None
    errors_while_computing: bool = False
    error: str | None = None  # timeout, connection_error, api_error_<status>, quota_limited, ...
    minimal_flag_called_events: bool = False
    evaluated_at: int | None = None  # ``evaluatedAt``: when PostHog evaluated (ms)


class RemoteFlags:
    def __init__(
        self,
        transport: HttpTransport,
        api_key: str,
        *,
        timeout: float,
        max_retries: int,
        clock: Clock,
    ) -> None:
        self._transport = transport
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._clock = clock
        self.requests = 0

    def evaluate(
        self,
        distinct_id: str,
        *,
        groups: Mapping[str, Any],
        person_properties: Mapping[str, Any],
        group_properties: Mapping[str, Mapping[str, Any]],
        disable_geoip: bool,
        flag_keys: list[str] | None = None,
        device_id: str | None = None,
    ) -> RemoteAnswer:
        body: dict[str, Any] = {
            "api_key": self._api_key,
            "distinct_id": distinct_id,
            "groups": dict(groups),
            "person_properties": dict(person_properties),
            "group_properties": {k: dict(v) for k, v in group_properties.items()},
            "geoip_disable": disable_geoip,
            "device_id": device_id,  # as posthog sends it: null when there is none
        }
        if flag_keys is not None:
            body["flag_keys_to_evaluate"] = list(flag_keys)
        content = dumps(body)
        for attempt in range(self._max_retries + 1):
            if attempt:
                self._sleep(0.3 * 2 ** (attempt - 1))
            self.requests += 1
            try:
                response = self._transport.request(
                    "POST",
                    "/flags/",
                    params={"v": "2"},
                    content=content,
                    headers={"Content-Type": "application/json"},
                    timeout=self._timeout,
                )
            except TransportError as exc:
                if exc.refused or exc.permanent or attempt == self._max_retries:
                    code = "timeout" if "Timeout" in str(exc) else "connection_error"
                    return RemoteAnswer(error=code)
                continue
            if response.status in (502, 504) and attempt < self._max_retries:
                continue
            if response.status != 200:
                return RemoteAnswer(error=f"api_error_{response.status}")
            try:
                return parse_flags_response(json.loads(response.content))
            except Exception:
                logger.warning("could not parse a /flags response", exc_info=True)
                return RemoteAnswer(error="unknown_error")
        return RemoteAnswer(error="unknown_error")

    def _sleep(self, seconds: float) -> None:
        cond = threading.Condition()
        with cond:
            deadline = self._clock.monotonic() + seconds
            while (remaining := deadline - self._clock.monotonic()) > 0:
                self._clock.wait(cond, remaining, idle=False)


def parse_flags_response(data: Mapping[str, Any]) -> RemoteAnswer:
    """The v2 ``flags`` map (or the legacy ``featureFlags``/``featureFlagPayloads``)."""
    evaluated_at = data.get("evaluatedAt")
    answer = RemoteAnswer(
        request_id=data.get("requestId"),
        errors_while_computing=bool(data.get("errorsWhileComputingFlags")),
        minimal_flag_called_events=data.get("minimalFlagCalledEvents") is True,
        evaluated_at=evaluated_at
        if isinstance(evaluated_at, int) and not isinstance(evaluated_at, bool)
        else None,
    )
    if "feature_flags" in (data.get("quotaLimited") or []):
        answer.error = "quota_limited"
        return answer
    if isinstance(data.get("flags"), dict):
        for key, record in data["flags"].items():
            if not isinstance(record, dict) or record.get("failed"):
                continue
            metadata = record.get("metadata") or {}
            reason = record.get("reason")
            reason = reason if isinstance(reason, dict) else {}
            description = reason.get("description")
            enabled = bool(record.get("enabled"))
            variant = record.get("variant")
            answer.flags[key] = FlagResult(
                key=key,
                enabled=enabled,
                variant=variant if isinstance(variant, str) and enabled else None,
                payload=decode_payload(metadata.get("payload"), key) if enabled else None,
                reason=description if isinstance(description, str) and description else None,
                locally_evaluated=False,
                id=metadata.get("id"),
                version=metadata.get("version"),
                request_id=answer.request_id,
                evaluated_at=answer.evaluated_at,
                reason_code=reason.get("code"),
                has_experiment=experiment_flag(metadata.get("has_experiment")),
                minimal_exposure=answer.minimal_flag_called_events,
            )
        return answer
    values = data.get("featureFlags") or {}
    payloads = data.get("featureFlagPayloads") or {}
    for key, value in values.items():
        enabled = bool(value)
        answer.flags[key] = FlagResult(
            key=key,
            enabled=enabled,
            variant=value if isinstance(value, str) else None,
            payload=decode_payload(payloads.get(key), key) if enabled else None,
            locally_evaluated=False,
            request_id=answer.request_id,
            evaluated_at=answer.evaluated_at,
        )
    return answer


RESULT_CACHE_MAX_ENTRIES = 10_000


# A cache entry's key: the distinct id, and the rest of the inputs serialized.
CacheKey = tuple[str, bytes]


@dataclass
class _Entry:
    stored: float
    flags: dict[str, FlagResult]
    asked: frozenset[str] | None  # the keys the server answered for; None: every flag


class ResultCache:
    """Opt-in (``flag_result_cache_ttl``): remote results served from memory for
    ``ttl`` seconds per (distinct id, groups, properties), so repeated reads send no
    request (contract FFC), single reads and ``evaluate_flags``/``get_all_flags*``
    alike. Only complete answers are stored: an error or a quota-limited answer keeps
    what was cached before. Cleared when definitions change, on close and by
    ``Client.clear_flag_cache``.

    An entry remembers which keys the server was asked about, so that a many-flag read
    is served only when the cache holds an answer for each key it needs (a key the
    server did not return counts as answered, unless the answer was partial).

    An LRU bounded to ``max_entries`` people: a put is O(1) (no copy of the cache), a
    full cache forgets the least recently used entry, an expired entry is dropped when
    it is next looked at."""

    def __init__(
        self, ttl: float, clock: Clock, max_entries: int = RESULT_CACHE_MAX_ENTRIES
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max_entries = max(1, max_entries)
        self._lock = fork_safe_lock()
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(
        distinct_id: str,
        groups: Mapping[str, Any],
        person: Mapping[str, Any],
        group_properties: Mapping[str, Mapping[str, Any]],
        device_id: str | None = None,
    ) -> CacheKey:
        rest = orjson.dumps(
            clean([groups, person, group_properties, device_id], set()),
            option=orjson.OPT_SORT_KEYS,
        )
        return distinct_id, rest

    def _fresh(self, key: Any) -> _Entry | None:
        """The entry, if it has not expired (called with the lock held)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock.monotonic() - entry.stored > self._ttl:
            del self._entries[key]  # expired: forgotten, not served
            return None
        self._entries.move_to_end(key)
        return entry

    def get(self, key: Any, flag: str) -> FlagResult | None:
        if key is None:
            return None
        with self._lock:
            entry = self._fresh(key)
        return None if entry is None else entry.flags.get(flag)

    def get_many(self, key: Any, flags: list[str] | None) -> dict[str, FlagResult] | None:
        """The cached results of ``flags`` (``None``: every flag), or ``None`` when the
        cache cannot answer for all of them (then one request asks for them)."""
        if key is None:
            return None
        with self._lock:
            entry = self._fresh(key)
        if entry is None:
            return None
        if entry.asked is None:
            if flags is None:
                return dict(entry.flags)
        elif flags is None or not entry.asked.issuperset(flags):
            return None
        return {k: entry.flags[k] for k in flags if k in entry.flags}

    def put(
        self,
        key: Any,
        flags: Mapping[str, FlagResult],
        asked: list[str] | None = None,
        *,
        complete: bool = True,
    ) -> None:
        """Store an answer; ``asked``: the keys requested (``None``: every flag), and
        ``complete=False`` for an answer with errors (only the keys it holds count as
        answered)."""
        if key is None:
            return
        answered: frozenset[str] | None = frozenset(flags)  # a partial answer's keys
        if complete:
            answered = None if asked is None else frozenset(asked)
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None and now - entry.stored > self._ttl:
                entry = None  # expired: not merged
            merged = dict(flags) if entry is None else {**entry.flags, **flags}
            if entry is not None:  # a new dict: readers may hold the old one
                answered = (
                    None if entry.asked is None or answered is None else entry.asked | answered
                )
            self._entries[key] = _Entry(now, merged, answered)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)  # the least recently used

    def clear(self, distinct_id: str | None = None) -> None:
        """Forget everything, or what is cached for ``distinct_id``."""
        with self._lock:
            if distinct_id is None:
                self._entries.clear()
                return
            for key in [k for k in self._entries if isinstance(k, tuple) and k[0] == distinct_id]:
                del self._entries[key]
