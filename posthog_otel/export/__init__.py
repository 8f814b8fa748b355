"""The delivery path: event → queue → batch → request.

``BatchExporter`` owns the bounded queue and the flush thread; a *lane* (``V0Lane`` for
``/batch/``, ``V1Lane`` for capture v1, ``AiLane`` for ``/i/v0/ai/batch/``, ``LogsLane``
and ``TracesLane`` for OTLP on ``/i/v1/logs`` and ``/i/v1/traces``) decides how events
are encoded and how a batch becomes a request; ``SpoolingExporter`` (``spool_path``)
keeps the analytics lane's accepted events in a SQLite spool (``_spool``) until
acknowledged; the transport does the HTTP; the retry
policy classifies answers and computes waits.
"""

from ._ai import AI_MAX_BATCH_BYTES, AI_MAX_EVENT_BYTES, AiLane
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
from ._otlp import resource_attributes, valid_flags, valid_hex_id
from ._otlp_lanes import LOGS_PATH, MAX_OTLP_BATCH_BYTES, TRACES_PATH, LogsLane, TracesLane
from ._spool import DEFAULT_SPOOL_BYTES, SPOOL_IMPORTS, spool_lane
from ._spooling import WRITE_WINDOW, SpoolingExporter
from ._transport import MAX_RESPONSE_BYTES, HttpTransport, TransportError
from ._v0 import V0Lane
from ._v1 import V1_PATH, V1Lane

__all__ = [
    "AI_MAX_BATCH_BYTES",
    "AI_MAX_EVENT_BYTES",
    "DEFAULT_ITEM_BYTES",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_SPOOL_BYTES",
    "LOGS_PATH",
    "MAX_OTLP_BATCH_BYTES",
    "MAX_RESPONSE_BYTES",
    "SPOOL_IMPORTS",
    "THREAD_IMPORTS",
    "TRACES_PATH",
    "V1_PATH",
    "WRITE_WINDOW",
    "AiLane",
    "BatchExporter",
    "Clock",
    "Deferred",
    "ExporterConfig",
    "HttpTransport",
    "Lane",
    "LogsLane",
    "SpoolingExporter",
    "SystemClock",
    "TracesLane",
    "TransportError",
    "V0Lane",
    "V1Lane",
    "resource_attributes",
    "spool_lane",
    "valid_flags",
    "valid_hex_id",
]
