"""Constructor arguments and environment fallbacks, validated in one place.

A bad explicit argument is a programmer's mistake and raises ``ValueError`` naming it;
a bad environment value is an operator's and only warns, falling back to the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ._log import logger

DEFAULT_HOST = "https://us.i.posthog.com"
# Where the keys are read from when not given, first found wins (the client and the
# ``posthog-otel`` command read the same).
API_KEY_ENV = ("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY")
SECRET_KEY_ENV = ("POSTHOG_SECRET_KEY", "POSTHOG_PERSONAL_API_KEY")
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
    are mapped to their ingestion hosts and a trailing ``/`` is dropped.

    A malformed host is refused here (explicit: ``ValueError``; from the environment: a
    warning and the default), not found later by the flush thread as requests that can
    never be sent."""
    from_env = host is None
    value = (host if host is not None else env_first("POSTHOG_HOST")) or ""
    if not isinstance(value, str):
        raise ValueError(
            f"host must be a string like 'https://us.i.posthog.com', not {type(value).__name__}"
        )
    value = value.strip()
    shown = mask_credentials(value)
    value = value.rstrip("/")
    if not value:
        return DEFAULT_HOST
    problem = _host_problem(value, shown)
    if problem:
        if from_env:
            logger.warning("POSTHOG_HOST %s; using %s", problem, DEFAULT_HOST)
            return DEFAULT_HOST
        raise ValueError(f"host {problem}: give a URL like 'https://us.i.posthog.com'")
    return _APP_HOSTS.get(value, value)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its userinfo, and the (user, password) it carried, if any: they
    travel as a Basic auth header, since httpx logs every request's URL at INFO."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    return parts._replace(netloc=hostport).geturl(), (unquote(user), unquote(password))


def mask_credentials(url: str) -> str:
    """``url`` fit for a repr, a log line or an error message: what stands before the
    last ``@`` of the authority masked (``user:***@``, or ``***@`` for a lone name, which
    is often a token). A password with an unencoded ``@`` or ``/`` is masked whole too.
    Never raises, even on a malformed URL."""
    scheme_end = url.find("//")
    start = 0 if scheme_end < 0 else scheme_end + 2
    end = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    at = url.rfind("@", start, end)
    if at < 0:
        return url
    user, colon, _ = url[start:at].partition(":")
    shown = f"{user}:***" if colon and "/" not in user else "***"
    return url[:start] + shown + url[at:]


def _host_problem(value: str, shown: str) -> str:
    """What is wrong with ``value`` as a host URL ("" if nothing); ``shown`` is how the
    value appears in the message."""
    from urllib.parse import urlsplit

    if not value.startswith(("http://", "https://")):
        return f"must start with http:// or https:// (got {shown!r})"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return f"must not contain spaces or control characters (got {shown!r})"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number in range
        hostname = parts.hostname
    except ValueError as exc:
        return f"is not a valid URL ({exc}; got {shown!r})"
    if not hostname:
        return f"has no host name (got {shown!r})"
    if port == 0:
        return f"has an invalid port 0 (got {shown!r})"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return f"must not have a query string or fragment (got {shown!r})"
    return ""


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


# The longest time any wait, timeout or deadline is given: one day. Longer values (``1e12``,
# ``inf``) mean "as long as it takes" and are capped, since locks, sockets and ``poll``
# refuse them (an ``OverflowError`` that used to drop every batch or break ``close()``).
MAX_SECONDS = 86_400.0


def check_float(name: str, value: object, minimum: float = 0.0, *, positive: bool = False) -> float:
    """A duration in seconds: ``ValueError`` for a non-number, NaN or out of range;
    capped at ``MAX_SECONDS``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if value < minimum or (positive and value <= 0):
        bound = "> 0" if positive else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return min(float(value), MAX_SECONDS)


def capped_seconds(value: float) -> float:
    """A timeout given to a call (``flush``, ``close``), within ``[0, MAX_SECONDS]``;
    NaN counts as 0 (do not wait). Never raises."""
    return min(value, MAX_SECONDS) if value > 0 else 0.0


def check_callable(name: str, value: object) -> Callable[..., object] | None:
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def check_hooks(name: str, before_send: object) -> tuple[Callable[..., Any], ...]:
    """A lane's ``before_send`` as a tuple of hooks (one callable, or a list run left
    to right; ``None``: none)."""
    if before_send is None:
        return ()
    hooks = tuple(before_send) if isinstance(before_send, list | tuple) else (before_send,)
    for hook in hooks:
        if not callable(hook):
            raise ValueError(f"{name} must be a callable or a list of callables, got {hook!r}")
    return hooks


def check_resource(prefix: str, options: object) -> Mapping[str, Any]:
    """The OTLP resource options of ``LogsConfig``/``TracesConfig`` checked
    (``service_name``, ``service_version``, ``environment``: a non-empty string or
    ``None``; ``resource_attributes``: a mapping); a frozen copy of the attributes."""
    for name in ("service_name", "service_version", "environment"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{prefix}.{name} must be a non-empty string or None, got {value!r}")
    attributes = getattr(options, "resource_attributes", None)
    if not isinstance(attributes, Mapping):
        raise ValueError(f"{prefix}.resource_attributes must be a mapping")
    return MappingProxyType(dict(attributes))


def mask_key(key: str | None) -> str:
    """A key as it may appear in reprs and logs: never more than a short prefix."""
    if not key:
        return "None"
    return key[:4] + "…"
