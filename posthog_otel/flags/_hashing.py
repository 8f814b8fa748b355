"""PostHog's bucketing hash: the same user lands in the same bucket as on the server."""

from __future__ import annotations

import struct
from hashlib import sha1

_SCALE = float(0xFFFFFFFFFFFFFFF)  # 15 hex digits
_FIRST_8_BYTES = struct.Struct(">Q").unpack_from
_HOLDOUT_PREFIX = b"holdout-"


def bucket(key: str, bucketing_value: object, salt: str = "") -> float:
    """``int(sha1(f"{key}.{value}{salt}")[:15], 16) / (2**60 - 1)``: a number in [0, 1]."""
    return bucket_with_prefix(f"{key}.".encode(), bucketing_value, salt.encode())


# The same people are evaluated again and again (every request of a signed-in user), so
# buckets are memoized. Bounded; cleared whole when full (a pure function: no staleness).
_MEMO_MAX = 65_536
_memo: dict[tuple[bytes, str, bytes], float] = {}


def bucket_with_prefix(prefix: bytes, bucketing_value: object, salt: bytes = b"") -> float:
    """``bucket`` with the ``"<key>."`` bytes prepared once per flag.

    The first 15 hex digits of the digest are the top 60 bits of its first 8 bytes.
    """
    # Only strings are memo keys: True == 1 as keys, yet they hash as "True" and "1".
    value = bucketing_value if type(bucketing_value) is str else f"{bucketing_value}"
    key = (prefix, value, salt)
    cached = _memo.get(key)
    if cached is not None:
        return cached
    top_60_bits: int = _FIRST_8_BYTES(sha1(prefix + value.encode() + salt).digest())[0] >> 4
    result = top_60_bits / _SCALE
    if len(_memo) >= _MEMO_MAX:
        _memo.clear()
    _memo[key] = result
    return result


def holdout_bucket(bucketing_value: object) -> float:
    """The holdout hash: the server hashes ``holdout-<value>`` (a dash, not a dot)."""
    return bucket_with_prefix(_HOLDOUT_PREFIX, bucketing_value)
