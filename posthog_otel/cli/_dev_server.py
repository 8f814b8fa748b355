"""``posthog-otel dev-server``: the project's fake PostHog on a local port, with a live
web view of what arrives, so a developer points ``POSTHOG_HOST`` at it and watches
their app: events with their properties and identity, each lane, the ``/flags``
answers, and the flag definitions, editable as JSON (``testing.DevView``).

Nothing leaves the machine and nothing is kept on disk; the server listens on loopback
unless ``--host`` says otherwise, remembers only the last ``--keep`` arrivals, and runs
until SIGINT (Ctrl-C) or SIGTERM, then exits 0."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from .._fork import fork_safe_event

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8010
DEFAULT_KEEP = 500
_SERVER_HISTORY = 100  # requests the fake itself remembers: the view keeps its own copy


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "dev-server",
        help="run a fake PostHog with a live web view of what your app sends",
        description="Run the project's fake PostHog on a local port with a live web view "
        "of what arrives (events, identity, lanes, the /flags answers) and the flag "
        "definitions editable as JSON. Point POSTHOG_HOST at it. Stops on Ctrl-C.",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--keep",
        type=int,
        default=DEFAULT_KEEP,
        help=f"arrivals the view remembers (default: {DEFAULT_KEEP})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..testing import DevView, FakePostHog

    if args.keep < 1:
        print("posthog-otel dev-server: --keep must be at least 1", file=sys.stderr)
        return 2
    server = FakePostHog(host=args.host, port=args.port, keep=_SERVER_HISTORY)
    view = DevView(server, keep=args.keep)
    try:
        server.start()
    except OSError as exc:
        print(f"posthog-otel dev-server: cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    stop = fork_safe_event()
    restore = _on_stop_signals(stop)
    try:
        _announce(server.url, args.host)
        stop.wait()
    finally:
        restore()
        view.close()
        server.stop()
    print("posthog-otel dev-server: stopped")
    return 0


def _announce(url: str, host: str) -> None:
    port = url.rpartition(":")[2]
    local = url if host not in ("", "0.0.0.0") else f"http://127.0.0.1:{port}"
    print(f"posthog-otel dev-server: a fake PostHog at {url} (nothing leaves this machine)")
    print(f"  web view:  {local}/")
    print(f"  your app:  export POSTHOG_HOST={local}")
    print("             any project key is accepted (phc_...); for local flag evaluation,")
    print("             any secret key that is not a phc_ key (POSTHOG_SECRET_KEY=phs_dev)")
    if host not in ("127.0.0.1", "localhost"):
        print(f"  warning:   listening on {host}: other machines can send and see events")
    print("Ctrl-C to stop.")
    sys.stdout.flush()


def _on_stop_signals(stop: threading.Event) -> Any:
    """SIGINT and SIGTERM set ``stop`` (a clean exit 0, not a traceback); the returned
    function puts the previous handlers back. Only the main thread can set handlers
    (the command always runs there; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
