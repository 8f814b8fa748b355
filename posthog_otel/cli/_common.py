"""What every command shares: the settings, read as the client reads them, one
transport with a deadline on every request, and the definitions fetch.

The definitions are fetched here rather than through a client's poller so that a
refusal is told with its HTTP status (the poller only logs it and falls back to remote
evaluation, which is right for an app and useless for a diagnosis)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from .. import _config
from ..export import HttpTransport, TransportError
from ..flags import Definitions

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Settings:
    """Host and keys, each with where it came from (an option, a variable, a default)."""

    host: str  # as given, credentials included (the transport sends them as a header)
    shown_host: str  # credentials masked: safe to print
    host_from: str
    host_problem: str | None
    api_key: str | None
    api_key_from: str
    secret_key: str | None
    secret_key_from: str
    timeout: float

    def scrub(self, text: str) -> str:
        """``text`` with any full key replaced by its prefix: what we print of an
        error that might quote one (a URL with ``?token=``)."""
        for key in (self.api_key, self.secret_key):
            if key:
                text = text.replace(key, _config.mask_key(key))
        return text


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="PostHog host (default: POSTHOG_HOST, else US cloud)")
    parser.add_argument(
        "--api-key", help="project API key (default: POSTHOG_API_KEY or POSTHOG_PROJECT_API_KEY)"
    )
    parser.add_argument(
        "--secret-key",
        help="secret key / personal API key for flag definitions "
        "(default: POSTHOG_SECRET_KEY or POSTHOG_PERSONAL_API_KEY)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds allowed for each request (default: {DEFAULT_TIMEOUT:g})",
    )


def read_settings(args: argparse.Namespace) -> Settings:
    """The options, else the environment, as ``Client()`` reads it (``_config``)."""
    raw_host, host_from = _pick(args.host, ("POSTHOG_HOST",))
    problem = None
    host = _config.DEFAULT_HOST
    if raw_host:
        try:
            host = _config.resolve_host(raw_host)
        except ValueError as exc:
            problem = f"{host_from}: {exc}"
    else:
        host_from = "default"
    api_key, api_key_from = _pick(args.api_key, _config.API_KEY_ENV)
    secret_key, secret_key_from = _pick(args.secret_key, _config.SECRET_KEY_ENV)
    return Settings(
        host=host,
        shown_host=_config.mask_credentials(host),
        host_from=host_from,
        host_problem=problem,
        api_key=api_key,
        api_key_from=api_key_from,
        secret_key=secret_key,
        secret_key_from=secret_key_from,
        timeout=_config.check_float("--timeout", args.timeout, positive=True),
    )


def _pick(option: str | None, names: tuple[str, ...]) -> tuple[str | None, str]:
    """A value and where it came from: the option, else the first variable set."""
    if option is not None and option.strip():
        return option.strip(), "option"
    for name in names:
        if _config.env_first(name):
            return _config.env_first(name), name
    return None, "not set"


def transport(settings: Settings) -> HttpTransport:
    from ..client import USER_AGENT

    return HttpTransport(settings.host, user_agent=USER_AGENT)


@dataclass(frozen=True)
class Fetched:
    """The outcome of one definitions request: the compiled definitions, or what
    went wrong (``problem``), with the HTTP status when there was an answer."""

    definitions: Definitions | None
    problem: str | None
    status: int | None = None


def fetch_definitions(http: HttpTransport, settings: Settings) -> Fetched:
    """``GET /flags/definitions`` with the secret key, as the client's poller sends
    it, within the deadline."""
    if not settings.secret_key:
        return Fetched(None, "no secret key (" + " or ".join(_config.SECRET_KEY_ENV) + ")")
    try:
        response = http.request(
            "GET",
            "/flags/definitions",
            params={"token": settings.api_key or "", "send_cohorts": ""},
            headers={"Authorization": f"Bearer {settings.secret_key}"},
            timeout=settings.timeout,
        )
    except TransportError as exc:
        return Fetched(None, settings.scrub(f"no answer from {settings.shown_host} ({exc})"))
    status = response.status
    if status in (401, 403):
        return Fetched(
            None,
            f"the secret key {_config.mask_key(settings.secret_key)} was refused (HTTP {status}): "
            "it must be a feature-flags secret key or a personal API key with flag read access",
            status,
        )
    if status == 402:
        return Fetched(None, "the project's feature flag quota is exceeded (HTTP 402)", status)
    if status != 200:
        return Fetched(None, f"flag definitions: HTTP {status}", status)
    try:
        data: Any = json.loads(response.content)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return Fetched(None, "flag definitions: the answer is not JSON", status)
    if not isinstance(data, dict) or not isinstance(data.get("flags"), list):
        return Fetched(None, "flag definitions: unexpected answer (no flags list)", status)
    return Fetched(Definitions(data), None, status)


def parse_value(text: str) -> Any:
    """A property value from the command line: JSON when it reads as a JSON number,
    boolean or null (``30``, ``true``), else the text itself."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return value if value is None or isinstance(value, bool | int | float) else text


def pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``name=value`` arguments as a dict; ``ValueError`` naming the bad one."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} must be NAME=VALUE, got {item!r}")
        out[name] = value
    return out
