"""The ``posthog-otel`` command (also ``python -m posthog_otel``).

One module per command: ``doctor`` checks a deployment's settings against PostHog,
``flags eval`` evaluates a flag locally and says why, ``dev-server`` runs the fake
PostHog with a live web view of what an app sends. Settings are read from the
environment as the client reads them (``_config``); every request has a deadline (the
client's transport). Keys are never printed, only their prefixes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _dev_server, _doctor, _flags

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit code (0: fine, 1: a problem, 2: see the command)."""
    parser = argparse.ArgumentParser(
        prog="posthog-otel", description="Check and try out a posthog-otel setup."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _doctor.add_parser(commands)
    _flags.add_parser(commands)
    _dev_server.add_parser(commands)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    sys.stdout.flush()
    return code
