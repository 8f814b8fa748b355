"""PostHog's bucketing hash: the same user lands in the same bucket as on the server."""

from __future__ import annotations

from hashlib import sha1

_SCALE = float(0xFFFFFFFFFFFFFFF)  # 15 hex digits


def bucket(key: str, bucketing_value: object, salt: str = "") -> float:
    """``int(sha1(f"{key}.{value}{salt}")[:15], 16) / (2**60 - 1)``: a number in [0, 1].

    The first 15 hex digits are the top 60 bits of the digest's first 8 bytes.
    """
    digest = sha1(f"{key}.{bucketing_value}{salt}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 4) / _SCALE


def holdout_bucket(bucketing_value: object) -> float:
    """The holdout hash: the server hashes ``holdout-<value>`` (a dash, not a dot)."""
    digest = sha1(f"holdout-{bucketing_value}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 4) / _SCALE
