"""Retry policy: what an answer means, and how long to wait before trying again.

Kept apart from the exporter so that the delivery rules (README, "Delivery"; and the
capture v1 and OTLP lanes to come) live in one place.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from datetime import datetime, timezone

MAX_BACKOFF = 30.0
COOLDOWN_START = 30.0
COOLDOWN_MAX = 300.0
# The longest any Retry-After can make us wait: whatever a server says (``1e12``, ``inf``,
# a date in year 9999), delivery resumes within the cool-down maximum.
MAX_RETRY_AFTER = COOLDOWN_MAX


class Outcome(enum.Enum):
    """What to do with a batch after one HTTP answer."""

    DELIVERED = "delivered"
    RETRY = "retry"  # transient: try the same batch again after a backoff
    SPLIT = "split"  # 413, or 400 on several events: halve the batch and resend
    REJECT = "reject"  # terminal: drop the batch and report it


def classify(status: int | None, batch_len: int, *, split_400: bool = True) -> Outcome:
    """Classify an answer; ``None`` is a transport failure (no answer at all).

    ``split_400``: a 400 on several events halves the batch (the capture endpoints
    reject a whole batch over one bad event); the OTLP lanes drop it (LOG-30)."""
    if status is None:
        return Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in (408, 429) or status >= 500:
        return Outcome.RETRY
    if status == 413 or (split_400 and status == 400 and batch_len > 1):
        return Outcome.SPLIT
    return Outcome.REJECT


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), if any.

    Always finite and within ``[0, MAX_RETRY_AFTER]``: a hostile or broken value can
    neither overflow a wait nor stop delivery for longer than the cool-down maximum.
    """
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return _clamp(float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # rare: only for HTTP-date values

    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return _clamp((when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _clamp(seconds: float) -> float | None:
    """``seconds`` within ``[0, MAX_RETRY_AFTER]``; ``None`` for NaN (no usable value)."""
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff(retry_index: int, retry_after: float | None) -> float:
    """Wait before retry ``n`` (0-based): ``max(j·min(0.5·2ⁿ, 30), min(Retry-After, 30))``.

    Jitter ``j`` is uniform in [0.8, 1.2] and never shortens a ``Retry-After``.
    """
    # The exponent is capped: 2.0 ** 1024 overflows (max_retries has no upper bound).
    base: float = random.uniform(0.8, 1.2) * min(0.5 * 2.0 ** min(retry_index, 16), MAX_BACKOFF)
    if retry_after is not None:
        return max(base, min(retry_after, MAX_BACKOFF))
    return base


def cooldown(failed_cycles: int, retry_after: float | None, longest: float = COOLDOWN_MAX) -> float:
    """Wait before retrying a retained batch: 30 s doubling to ``longest`` (5 min; 30 s
    for the OTLP lanes, LOG-30/TRC-25), or its Retry-After, never more than 5 min."""
    wait: float = min(COOLDOWN_START * 2.0 ** min(max(failed_cycles - 1, 0), 16), longest)
    if retry_after is not None:
        wait = max(wait, _clamp(retry_after) or 0.0)
    return wait
