"""The OTLP lanes: ``POST /i/v1/logs`` (PostHog Logs, sdk-contracts §2.1) and
``POST /i/v1/traces`` (PostHog Traces, §2.2), both OTLP/JSON.

The queue holds plain records and spans (LOG-21); each is encoded once, when its batch
is taken, and a request wraps a batch in one ``resource…[0].scope…[0]`` (LOG-16,
TRC-16). A 400 (or any 4xx but 408/413/429) drops the batch instead of halving it, 413
halves it (LOG-30, TRC-25). JSON rather than protobuf: the library depends on no
``protobuf`` package (TRC-17 allows it for Python).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from ._batch import Lane
from ._gzip import gzip_body
from ._otlp import encode_log_record, encode_span, envelope
from ._retry import MAX_BACKOFF

__all__ = [
    "LOGS_PATH",
    "MAX_OTLP_BATCH_BYTES",
    "MAX_OTLP_ITEM_BYTES",
    "TRACES_PATH",
    "LogsLane",
    "TracesLane",
]

LOGS_PATH = "/i/v1/logs"
TRACES_PATH = "/i/v1/traces"
# The server refuses bodies over 2 MB (LOG-31, TRC-29). A batch is capped at 1 MiB
# *before* gzip, so a request stays well under the limit even uncompressed; one item may
# not exceed half of that.
MAX_OTLP_BATCH_BYTES = 1024 * 1024
MAX_OTLP_ITEM_BYTES = 512 * 1024


class _OtlpLane(Lane):
    """Encodes items with ``_encode`` and wraps a batch in the signal's envelope."""

    max_event_bytes = MAX_OTLP_ITEM_BYTES
    split_400 = False
    shrink_on_413 = True
    max_cooldown = MAX_BACKOFF  # "exponential backoff capped at ~30 s" (LOG-30, TRC-25)
    _signal = ""
    _encode: Callable[[Mapping[str, Any]], bytes]

    def __init__(
        self,
        api_key: str,
        *,
        gzip: bool,
        resource: Mapping[str, Any],
        scope_name: str,
        scope_version: str,
    ) -> None:
        self._gzip = gzip
        self._path = self._path_for(api_key)
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        self._scope = (scope_name, scope_version)
        self._head, self._tail = envelope(self._signal, resource, scope_name, scope_version)

    def set_resource(self, resource: Mapping[str, Any]) -> None:
        """Send ``resource`` from the next request on (the traces lane adopts the
        resource of the first OpenTelemetry spans it is given). One attribute swap:
        a request being built keeps the envelope it read."""
        self._head = envelope(self._signal, resource, *self._scope)[0]

    def _path_for(self, api_key: str) -> str:
        raise NotImplementedError

    def encode(self, event: dict[str, Any]) -> bytes:
        """One item as OTLP JSON (raises only if unencodable: dropped, counted)."""
        return type(self)._encode(event)

    def request(self, payloads: list[bytes]) -> tuple[str, bytes, dict[str, str]]:
        """Path, body and headers for one attempt; gzip with ``Content-Encoding: gzip``
        unless turned off (LOG-18, TRC-18)."""
        body = b"".join((self._head, b",".join(payloads), self._tail))
        headers = dict(self._headers)
        if self._gzip:
            body = gzip_body(body)
            headers["Content-Encoding"] = "gzip"
        return self._path, body, headers

    def envelope_overhead(self) -> int:
        """Bytes the envelope adds around the items."""
        return len(self._head) + len(self._tail)


class LogsLane(_OtlpLane):
    """``/i/v1/logs?token=…`` (LOG-17; the Bearer header too) with OTLP ``LogRecord``s."""

    _signal = "logs"
    noun = "log record"
    _encode = staticmethod(encode_log_record)

    def _path_for(self, api_key: str) -> str:
        return f"{LOGS_PATH}?token={quote(api_key, safe='')}"


class TracesLane(_OtlpLane):
    """``/i/v1/traces`` with ``Authorization: Bearer`` (TRC-17) and OTLP ``Span``s."""

    _signal = "traces"
    noun = "span"
    _encode = staticmethod(encode_span)

    def _path_for(self, api_key: str) -> str:
        return TRACES_PATH
