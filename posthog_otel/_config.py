"""Constructor arguments and environment fallbacks, validated in one place.

A bad explicit argument is a programmer's mistake and raises ``ValueError`` naming it;
a bad environment value is an operator's and only warns, falling back to the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ._log import logger

DEFAULT_HOST = "https://us.i.posthog.com"
_APP_HOSTS = {
    "https://app.posthog.com": "https://us.i.posthog.com",
    "https://us.posthog.com": "https://us.i.posthog.com",
    "https://eu.posthog.com": "https://eu.i.posthog.com",
}


def env_first(*names: str) -> str | None:
    """The first non-blank environment variable among ``names``."""
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def resolve_host(host: str | None) -> str:
    """The ingestion host: explicit, else ``POSTHOG_HOST``, else US cloud; app hosts
    are mapped to their ingestion hosts and a trailing ``/`` is dropped."""
    from_env = host is None
    value = (host if host is not None else env_first("POSTHOG_HOST")) or ""
    value = value.strip().rstrip("/")
    if not value:
        return DEFAULT_HOST
    if not value.startswith(("http://", "https://")):
        if from_env:
            logger.warning("POSTHOG_HOST has no http(s) scheme; using %s", DEFAULT_HOST)
            return DEFAULT_HOST
        shown = "***@" + value.rpartition("@")[2] if "@" in value else value  # no password
        raise ValueError(f"host must start with http:// or https://, got {shown!r}")
    return _APP_HOSTS.get(value, value)


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_float(name: str, value: object, minimum: float = 0.0, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if value < minimum or (positive and value <= 0):
        bound = "> 0" if positive else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def check_callable(name: str, value: object) -> Callable[..., object] | None:
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def mask_key(key: str | None) -> str:
    """A key as it may appear in reprs and logs: never more than a short prefix."""
    if not key:
        return "None"
    return key[:4] + "…"
