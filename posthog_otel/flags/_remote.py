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
from ._results import FlagResult, experiment_flag


@dataclass
class RemoteAnswer:
    """The flags of one ``/flags`` response (or the error that prevented it)."""

    flags: dict[str, FlagResult] = field(default_factory=dict)
    request_id: str | None = None
    errors_while_computing: bool = False
    error: str | None = None  # timeout, connection_error, api_error_<status>, quota_limited, ...
    minimal_flag_called_events: bool = False


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
    ) -> RemoteAnswer:
        body: dict[str, Any] = {
            "api_key": self._api_key,
            "distinct_id": distinct_id,
            "groups": dict(groups),
            "person_properties": dict(person_properties),
            "group_properties": {k: dict(v) for k, v in group_properties.items()},
            "geoip_disable": disable_geoip,
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
    answer = RemoteAnswer(
        request_id=data.get("requestId"),
        errors_while_computing=bool(data.get("errorsWhileComputingFlags")),
        minimal_flag_called_events=data.get("minimalFlagCalledEvents") is True,
    )
    if "feature_flags" in (data.get("quotaLimited") or []):
        answer.error = "quota_limited"
        return answer
    if isinstance(data.get("flags"), dict):
        for key, record in data["flags"].items():
            if not isinstance(record, dict) or record.get("failed"):
                continue
            metadata = record.get("metadata") or {}
            reason = record.get("reason") or {}
            enabled = bool(record.get("enabled"))
            variant = record.get("variant")
            answer.flags[key] = FlagResult(
                key=key,
                enabled=enabled,
                variant=variant if isinstance(variant, str) and enabled else None,
                payload=_decode_payload(metadata.get("payload")) if enabled else None,
                reason=reason.get("code"),
                locally_evaluated=False,
                id=metadata.get("id"),
                version=metadata.get("version"),
                request_id=answer.request_id,
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
            payload=_decode_payload(payloads.get(key)) if enabled else None,
            locally_evaluated=False,
            request_id=answer.request_id,
        )
    return answer


def _decode_payload(payload: Any) -> Any:
    """Payloads travel as JSON strings; ``NaN``/``Infinity`` and invalid JSON are ``None``."""
    if not isinstance(payload, str):
        return payload
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, TypeError):
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


RESULT_CACHE_MAX_ENTRIES = 10_000


class ResultCache:
    """Opt-in (``flag_result_cache_ttl``): remote results served from memory for
    ``ttl`` seconds per (distinct id, groups, properties), so repeated reads send no
    request (contract FFC). Only complete answers are stored: an error or a quota-limited
    answer keeps what was cached before. Cleared when definitions change and on close.

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
        self._entries: OrderedDict[bytes, tuple[float, dict[str, FlagResult]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(
        distinct_id: str,
        groups: Mapping[str, Any],
        person: Mapping[str, Any],
        group_properties: Mapping[str, Mapping[str, Any]],
    ) -> bytes:
        return orjson.dumps(
            clean([distinct_id, groups, person, group_properties], set()),
            option=orjson.OPT_SORT_KEYS,
        )

    def get(self, key: bytes | None, flag: str) -> FlagResult | None:
        if key is None:
            return None
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry[0] > self._ttl:
                del self._entries[key]  # expired: forgotten, not served
                return None
            self._entries.move_to_end(key)
        return entry[1].get(flag)

    def put(self, key: bytes | None, flags: Mapping[str, FlagResult]) -> None:
        if key is None:
            return
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entries.pop(key, None)
            merged = entry[1] if entry is not None and now - entry[0] <= self._ttl else {}
            merged = {**merged, **flags}  # a new dict: readers may hold the old one
            self._entries[key] = (now, merged)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)  # the least recently used

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
