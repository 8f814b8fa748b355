"""The delivery path: event → queue → batch → request.

``BatchExporter`` owns the bounded queue and the flush thread; a *lane* (``V0Lane`` for
``/batch/``) decides how events are encoded and how a batch becomes a request; the
transport does the HTTP; the retry policy classifies answers and computes waits.
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
from ._transport import HttpTransport, TransportError
from ._v0 import V0Lane

__all__ = [
    "DEFAULT_ITEM_BYTES",
    "DEFAULT_MAX_QUEUE_BYTES",
    "THREAD_IMPORTS",
    "BatchExporter",
    "Clock",
    "Deferred",
    "ExporterConfig",
    "HttpTransport",
    "Lane",
    "SystemClock",
    "TransportError",
    "V0Lane",
]
