"""Event ids: UUIDv7 generation on the caller's thread, validation of caller-given ids."""

from __future__ import annotations

import random
import time
import uuid

# The random module reseeds itself in a forked child, so children never repeat ids.
_getrandbits = random.getrandbits
_time_ns = time.time_ns


# (millisecond, formatted id prefix): under load many ids share a millisecond, so the
# prefix is formatted once per millisecond. One tuple, so threads swap it atomically.
_prefix_cache: tuple[int, str] = (-1, "")


def uuid7() -> str:
    """A new RFC 9562 UUIDv7 (48-bit millisecond timestamp, 74 random bits) as a string."""
    global _prefix_cache
    ms = _time_ns() // 1_000_000
    cached_ms, prefix = _prefix_cache
    if ms != cached_ms:
        prefix = "%08x-%04x-7" % (ms >> 16, ms & 0xFFFF)  # noqa: UP031 - hot path
        _prefix_cache = (ms, prefix)
    rand = _getrandbits(74)
    return prefix + "%03x-%04x-%012x" % (  # noqa: UP031 - hot path
        rand >> 62,
        0x8000 | ((rand >> 48) & 0x3FFF),
        rand & 0xFFFFFFFFFFFF,
    )


def normalize_uuid(value: object) -> str | None:
    """The canonical string of a caller-given uuid, or ``None`` if it is not a UUID."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return None
    return None


def as_id(value: object) -> str | None:
    """``value`` as an id string; ``None`` when empty or when ``str()`` raises."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    try:
        return str(value) or None
    except Exception:
        return None
