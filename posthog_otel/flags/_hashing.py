"""PostHog's bucketing hash: the same user lands in the same bucket as on the server.

A bucket is ``int(sha1(f"{key}.{value}{salt}")[:15], 16) / (2**60 - 1)``, a number in
[0, 1]. ``bucket`` computes it the way the server does; ``rollout_gate`` and
``variant_picker`` decide the same comparisons without it, for the evaluators that run
on every flag read.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Callable, Sequence
from hashlib import sha1
from typing import TypeVar

_T = TypeVar("_T")
_SCALE = float(0xFFFFFFFFFFFFFFF)  # 15 hex digits
_FIRST_8_BYTES = struct.Struct(">Q").unpack_from
_HOLDOUT_PREFIX = b"holdout-"
_VARIANT_SALT = b"variant"
_BUCKETS = 1 << 60  # a bucket is n / _SCALE for a 60-bit n
_ABOVE_EVERY_DIGEST = b"\xff" * 21  # longer than a 20-byte digest: greater than all
_NO_DIGEST_BELOW = bytes(8)  # the bound of bucket 0
_NEAR = 1 << 10  # how far from its estimate a threshold's smallest bucket is looked for


def bucket(key: str, bucketing_value: object, salt: str = "") -> float:
    """The server's bucket of ``bucketing_value`` for the flag ``key``."""
    return bucket_with_prefix(f"{key}.".encode(), bucketing_value, salt.encode())


def bucket_with_prefix(prefix: bytes, bucketing_value: object, salt: bytes = b"") -> float:
    """``bucket`` with the ``"<key>."`` bytes prepared once per flag.

    The first 15 hex digits of the digest are the top 60 bits of its first 8 bytes.
    """
    value = bucketing_value if type(bucketing_value) is str else f"{bucketing_value}"
    top_60_bits: int = _FIRST_8_BYTES(sha1(prefix + value.encode() + salt).digest())[0] >> 4
    return top_60_bits / _SCALE


def holdout_bucket(bucketing_value: object) -> float:
    """The holdout hash: the server hashes ``holdout-<value>`` (a dash, not a dot)."""
    return bucket_with_prefix(_HOLDOUT_PREFIX, bucketing_value)


# ---------------------------------------------------------------- without the float
#
# The bucket only ever meets a fixed number (a rollout or a variant's range), and it
# grows with n, because a float division by a positive constant is monotonic. So
# "bucket > t" holds exactly for n from some smallest n(t) on, found once, when the flag
# is compiled, by a binary search over the very same float expression. A digest then
# compares with that bound as bytes (big-endian, like n): no int, no float, per read.


def smallest_bucket(threshold: float, *, inclusive: bool) -> int:
    """The smallest n whose bucket is ``> threshold`` (``>=`` when inclusive), or
    2**60 when no bucket is."""

    def passes(n: int) -> bool:
        value = n / _SCALE
        return value >= threshold if inclusive else value > threshold

    low, high = 0, _BUCKETS  # the answer is in [low, high]; high itself: "none"
    if 0.0 <= threshold <= 1.0:
        # n / _SCALE is within a few units of n / 2**60: start near the answer, and
        # search all of it only if the guess turns out not to bracket it.
        guess = int(threshold * _BUCKETS)
        near_low, near_high = max(guess - _NEAR, 0), min(guess + _NEAR, _BUCKETS)
        if (near_low == 0 or not passes(near_low - 1)) and (
            near_high == _BUCKETS or passes(near_high)
        ):
            low, high = near_low, near_high
    while low < high:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle + 1
    return low


def digest_bound(n: int) -> bytes:
    """The bytes a digest is ``>=`` exactly when the top 60 bits of its first 8 bytes
    are ``>= n``: an 8-byte prefix compares before the rest of the digest is looked at."""
    return _ABOVE_EVERY_DIGEST if n >= _BUCKETS else (n << 4).to_bytes(8, "big")


def rollout_gate(prefix: bytes, percentage: float, inside: _T) -> Callable[[str], _T | None]:
    """``value -> inside`` when ``bucket(value) <= percentage / 100`` (the id is within
    the rollout), else ``None``."""
    bound = _rollout_bound(percentage)
    keyed = sha1(prefix)  # the flag's part of every key, hashed once, copied per read

    def gate(value: str) -> _T | None:
        state = keyed.copy()
        state.update(value.encode())
        return inside if state.digest() < bound else None

    return gate


def variant_picker(
    prefix: bytes, variants: Sequence[tuple[str, float, float]], percentage: float | None = None
) -> Callable[[str], str | bool | None]:
    """``value -> None`` when ``percentage`` is given and the id is outside that rollout;
    otherwise the first variant whose ``low <= bucket < high`` under the variant hash
    (salt "variant"), or ``True`` when none is. The variant key extends the rollout key,
    so the second digest continues the first."""
    ranges = variant_ranges(variants)
    bound = None if percentage is None else _rollout_bound(percentage)
    keyed = sha1(prefix)
    highs = [high for _, _, high in ranges]
    outcomes: tuple[str | bool, ...] = (*(key for key, _, _ in ranges), True)
    choose: Callable[[bytes], str | bool] | None = None
    if [low for _, low, _ in ranges] != [_NO_DIGEST_BELOW, *highs[:-1]] or highs != sorted(highs):
        # Not laid end to end from 0 (a negative split): test every range in order.
        def choose(digest: bytes) -> str | bool:
            for key, low, high in ranges:
                if low <= digest < high:
                    return key
            return True

    def pick(value: str) -> str | bool | None:
        state = keyed.copy()
        state.update(value.encode())
        if bound is not None and state.digest() >= bound:
            return None
        state.update(_VARIANT_SALT)
        digest = state.digest()
        if choose is not None:
            return choose(digest)
        # End to end: the first range holding the digest is the first whose upper bound
        # is above it.
        return outcomes[bisect_right(highs, digest)]

    return pick


def _rollout_bound(percentage: float) -> bytes:
    """The digests at or above this are outside a rollout of ``percentage``."""
    return digest_bound(smallest_bucket(percentage / 100, inclusive=False))


def variant_ranges(
    variants: Sequence[tuple[str, float, float]],
) -> tuple[tuple[str, bytes, bytes], ...]:
    """Each variant's ``low <= bucket < high`` as ``low_bound <= digest < high_bound``."""
    return tuple(
        (
            key,
            digest_bound(smallest_bucket(low, inclusive=True)),
            digest_bound(smallest_bucket(high, inclusive=True)),
        )
        for key, low, high in variants
    )
