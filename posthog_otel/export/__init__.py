"""The delivery path: event → queue → batch → request.

``BatchExporter`` owns the bounded queue and the flush thread; a *lane* (``V0Lane`` for
``/batch/``) decides how events are encoded and how a batch becomes a request; the
transport does the HTTP; the retry policy classifies answers and computes waits.
"""

from ._clock import Clock, SystemClock
from ._exporter import BatchExporter, ExporterConfig
from ._transport import HttpTransport, TransportError
from ._v0 import V0Lane

__all__ = [
    "BatchExporter",
    "Clock",
    "ExporterConfig",
    "HttpTransport",
    "SystemClock",
    "TransportError",
    "V0Lane",
]
