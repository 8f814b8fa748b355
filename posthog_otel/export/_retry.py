"""Retry policy: what an answer means, and how long to wait before trying again.

Kept apart from the exporter so that the rules of SPEC §3 (and the capture v1 and OTLP
lanes to come) live in one place.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from datetime import datetime, timezone

MAX_BACKOFF = 30.0
COOLDOWN_START = 30.0
COOLDOWN_MAX = 300.0


class Outcome(enum.Enum):
    """What to do with a batch after one HTTP answer."""

    DELIVERED = "delivered"
    RETRY = "retry"  # transient: try the same batch again after a backoff
    SPLIT = "split"  # 413, or 400 on several events: halve the batch and resend
    REJECT = "reject"  # terminal: drop the batch and report it


def classify(status: int | None, batch_len: int) -> Outcome:
    """Classify an answer; ``None`` is a transport failure (no answer at all)."""
    if status is None:
        return Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in (408, 429) or status >= 500:
        return Outcome.RETRY
    if status == 413 or (status == 400 and batch_len > 1):
        return Outcome.SPLIT
    return Outcome.REJECT


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), if any."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime  # rare: only for HTTP-date values

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def backoff(retry_index: int, retry_after: float | None) -> float:
    """Wait before retry ``n`` (0-based): ``max(j·min(0.5·2ⁿ, 30), min(Retry-After, 30))``.

    Jitter ``j`` is uniform in [0.8, 1.2] and never shortens a ``Retry-After``.
    """
    base: float = random.uniform(0.8, 1.2) * min(0.5 * 2.0**retry_index, MAX_BACKOFF)
    if retry_after is not None:
        return max(base, min(retry_after, MAX_BACKOFF))
    return base


def cooldown(failed_cycles: int, retry_after: float | None) -> float:
    """Wait before retrying a retained batch: 30 s doubling to 5 min, or its Retry-After."""
    wait: float = min(COOLDOWN_START * 2.0 ** max(failed_cycles - 1, 0), COOLDOWN_MAX)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return wait
