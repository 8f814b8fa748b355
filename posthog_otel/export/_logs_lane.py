"""The logs lane: ``POST /i/v1/logs`` with OTLP/JSON (PostHog Logs, sdk-contracts §2.1).

The queue holds plain records (LOG-21); each is encoded as one OTLP ``LogRecord`` when its
batch is taken, and a request wraps a batch in one ``resourceLogs[0].scopeLogs[0]``
(LOG-16). A 400 drops the batch instead of halving it, 413 halves it (LOG-30).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ._otlp import encode_log_record, logs_envelope

__all__ = ["LOGS_PATH", "MAX_LOG_BATCH_BYTES", "MAX_LOG_RECORD_BYTES", "LogsLane"]

LOGS_PATH = "/i/v1/logs"
# The server refuses bodies over 2 MB (LOG-31). A batch is capped at 1 MiB *before*
# gzip, so a request stays well under the limit even uncompressed; one record may not
# exceed half of that.
MAX_LOG_BATCH_BYTES = 1024 * 1024
MAX_LOG_RECORD_BYTES = 512 * 1024
_GZIP_LEVEL = 1  # as the v0 lane: about half the CPU of level 6 for ~9 % more bytes


class LogsLane:
    """Encodes log records as OTLP ``LogRecord`` JSON and batches them into requests."""

    max_event_bytes = MAX_LOG_RECORD_BYTES
    split_400 = False

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
        self._path = f"{LOGS_PATH}?token={quote(api_key, safe='')}"
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        self._head, self._tail = logs_envelope(resource, scope_name, scope_version)

    def encode(self, event: dict[str, Any]) -> bytes:
        """One record as OTLP ``LogRecord`` JSON (raises only if unencodable)."""
        return encode_log_record(event)

    def request(self, payloads: list[bytes]) -> tuple[str, bytes, dict[str, str]]:
        """Path (with ``?token=``, LOG-17), body and headers for one attempt; gzip with
        ``Content-Encoding: gzip`` unless turned off (LOG-18)."""
        body = b"".join((self._head, b",".join(payloads), self._tail))
        headers = dict(self._headers)
        if self._gzip:
            compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
            body = compressor.compress(body) + compressor.flush()
            headers["Content-Encoding"] = "gzip"
        return self._path, body, headers

    def envelope_overhead(self) -> int:
        """Bytes the envelope adds around the records."""
        return len(self._head) + len(self._tail)
