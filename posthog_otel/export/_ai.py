"""The ``/i/v0/ai/batch/`` lane of ``capture_ai``: the v0 batch shape with LLM
analytics' caps (CAI-09: 8 MiB per event, about 5 MiB per request)."""

from __future__ import annotations

from ._v0 import V0Lane

AI_MAX_EVENT_BYTES = 8 * 1024 * 1024
AI_MAX_BATCH_BYTES = 5 * 1024 * 1024


class AiLane(V0Lane):
    """A v0 lane whose requests go to the AI route. Events are encoded once when taken
    off the queue (``Batch``), so a retry resends the same envelope: timestamp,
    distinct id, event and uuid (CAI-05)."""

    path = "/i/v0/ai/batch/"
    max_event_bytes = AI_MAX_EVENT_BYTES
