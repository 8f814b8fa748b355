"""A WSGI app for gunicorn ``--preload``: the master captures and starts sending while
gunicorn forks its workers (the fork race of issue #10)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from posthog_otel import Client
from posthog_otel.middleware import PostHogWSGIMiddleware

client = Client(flush_interval=60.0)
client.capture("master_boot", os.environ["SCENARIO"] + "-master")
client.flush(0)  # the master's flush thread sends while the workers are forked


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    client.capture("request", properties={"pid": os.getpid()})  # identity from the header
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


app = PostHogWSGIMiddleware(_app)
