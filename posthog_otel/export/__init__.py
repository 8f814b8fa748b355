"""The delivery path: event → queue → batch → request.

``BatchExporter`` owns the bounded queue and the flush thread; a *lane* (``V0Lane`` for
``/batch/``, ``LogsLane`` for OTLP logs on ``/i/v1/logs``) decides how events are
encoded and how a batch becomes a request; the transport does the HTTP; the retry
policy classifies answers and computes waits.
"""

from ._batch import (
    DEFAULT_ITEM_BYTES,
    DEFAULT_MAX_QUEUE_BYTES,
    THREAD_IMPORTS,
    Deferred,
    ExporterConfig,
    Lane,
)
from ._clock import Clock, SystemClock
from ._exporter import BatchExporter
from ._logs_lane import LOGS_PATH, MAX_LOG_BATCH_BYTES, LogsLane
from ._otlp import resource_attributes, valid_flags, valid_hex_id
from ._transport import HttpTransport, TransportError
from ._v0 import V0Lane

__all__ = [
    "DEFAULT_ITEM_BYTES",
    "DEFAULT_MAX_QUEUE_BYTES",
    "LOGS_PATH",
    "MAX_LOG_BATCH_BYTES",
    "THREAD_IMPORTS",
    "BatchExporter",
    "Clock",
    "Deferred",
    "ExporterConfig",
    "HttpTransport",
    "Lane",
    "LogsLane",
    "SystemClock",
    "TransportError",
    "V0Lane",
    "resource_attributes",
    "valid_flags",
    "valid_hex_id",
]
