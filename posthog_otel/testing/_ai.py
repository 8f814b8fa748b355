"""How the fake server reads ``POST /i/v0/ai/batch/`` (LLM analytics, ``capture_ai``):
the v0 batch shape and checks with an 8 MiB cap per event (a bigger event fails the
request with 413, as PostHog's capture does). Its events are kept apart from the
analytics events (``FakePostHog.ai_events``), so a test sees which route each took."""

from __future__ import annotations

AI_PATH = "/i/v0/ai/batch"  # as ``normalize_path`` leaves it
AI_MAX_EVENT_BYTES = 8 * 1024 * 1024
