"""``posthog-otel doctor``: is this deployment's PostHog setup right?

Checks, in order: the host setting is valid, the host answers, the project key is
accepted (through ``/flags``, which answers 401 to a bad key; never by sending an
event, since capture accepts unknown keys), the secret key loads the flag
definitions, and how many flags local evaluation can decide (and why not the others).
Exit code 1 when a check failed (a secret key sent over plain http to another machine
is one); a missing secret key is a note, not a problem (flags are then evaluated
remotely)."""

from __future__ import annotations

import argparse
import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit

from .. import _config
from .._serialize import dumps
from .._version import __version__
from ..export import HttpTransport, TransportError
from ..flags import why_not_local
from ._common import Settings, add_connection_options, fetch_definitions, read_settings, transport

OK, NOTE, PROBLEM = "ok", "note", "PROBLEM"
_PROBE_DISTINCT_ID = "posthog-otel-doctor"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check the host, the project key and the secret key",
        description="Check the PostHog settings in the environment (as the client reads "
        "them) against PostHog. Exit code 1 when a check fails.",
    )
    add_connection_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = read_settings(args)
    report = _Report()
    print(f"posthog-otel {__version__} doctor")
    print(f"  host         {settings.shown_host}  ({settings.host_from})")
    print(f"  project key  {_shown(settings.api_key)}  ({settings.api_key_from})")
    print(f"  secret key   {_shown(settings.secret_key)}  ({settings.secret_key_from})")
    print()
    if settings.host_problem:
        report.add(PROBLEM, f"the host setting is invalid: {settings.host_problem}")
        return report.finish()
    if settings.secret_key and _in_clear(settings.host):
        report.add(
            PROBLEM,
            f"the secret key {_shown(settings.secret_key)} goes in clear text to "
            f"{settings.shown_host}: plain http to another machine",
            ["use https:// (the secret key reads every flag definition of the project)"],
        )
    http = transport(settings)
    try:
        if _check_host_and_key(http, settings, report):
            _check_definitions(http, settings, report)
    finally:
        http.close()
    return report.finish()


def _in_clear(host: str) -> bool:
    """``host`` is plain http to another machine (what is sent crosses a network)."""
    parts = urlsplit(host)
    if parts.scheme != "http":
        return False
    name = (parts.hostname or "").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(name).is_loopback
    except ValueError:
        return True  # a name that is not this machine's


def _shown(key: str | None) -> str:
    return _config.mask_key(key) if key else "-"


class _Report:
    def __init__(self) -> None:
        self.problems = 0

    def add(self, level: str, message: str, details: list[str] | None = None) -> None:
        if level == PROBLEM:
            self.problems += 1
        print(f"{level:<8} {message}")
        for line in details or []:
            print(f"           {line}")

    def finish(self) -> int:
        print()
        if self.problems:
            print(f"{self.problems} problem{'s' if self.problems > 1 else ''} found.")
            return 1
        print("No problems found.")
        return 0


def _check_host_and_key(http: HttpTransport, settings: Settings, report: _Report) -> bool:
    """``POST /flags`` with the project key: any answer says the host is reachable, a
    401 that the key is refused. ``False`` when the host did not answer."""
    body = {
        "api_key": settings.api_key or "",
        "distinct_id": _PROBE_DISTINCT_ID,
        "flag_keys_to_evaluate": [],
        "geoip_disable": True,
    }
    started = time.monotonic()
    try:
        response = http.request(
            "POST",
            "/flags/",
            params={"v": "2"},
            content=dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=settings.timeout,
        )
    except TransportError as exc:
        report.add(
            PROBLEM,
            f"the host is not reachable: {settings.shown_host}",
            [settings.scrub(str(exc)), f"(deadline {settings.timeout:g} s per request)"],
        )
        return False
    elapsed = (time.monotonic() - started) * 1000
    report.add(OK, f"the host answers ({elapsed:.0f} ms)")
    if not settings.api_key:
        names = " or ".join(_config.API_KEY_ENV)
        report.add(PROBLEM, f"no project key ({names}): the client drops every event")
    elif response.status == 200:
        report.add(OK, "the project key is accepted (/flags)")
    elif response.status == 401:
        report.add(
            PROBLEM,
            f"the project key {_shown(settings.api_key)} is refused (/flags: HTTP 401)",
            ["use the project API key (phc_...) from the project settings"],
        )
    else:
        report.add(PROBLEM, f"/flags answered HTTP {response.status} to the project key")
    return True


def _check_definitions(http: HttpTransport, settings: Settings, report: _Report) -> None:
    if not settings.secret_key:
        names = " or ".join(_config.SECRET_KEY_ENV)
        report.add(
            NOTE,
            f"no secret key ({names}): flags are evaluated remotely, one /flags request "
            "per read that the result cache does not answer",
        )
        return
    fetched = fetch_definitions(http, settings)
    definitions = fetched.definitions
    if definitions is None:
        report.add(PROBLEM, f"flag definitions cannot be loaded: {fetched.problem}")
        return
    flags = definitions.flags
    not_local = {
        key: why for key, flag in flags.items() if (why := why_not_local(definitions, flag))
    }
    report.add(OK, f"the secret key loads the flag definitions: {_count(len(flags), 'flag')}")
    local = len(flags) - len(not_local)
    report.add(
        OK if not not_local else NOTE,
        f"{local} of {len(flags)} evaluable locally"
        + (f"; {len(not_local)} need the server:" if not_local else ""),
        [f"{key}: {why}" for key, why in sorted(not_local.items())],
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
