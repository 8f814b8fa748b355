"""Flask served by gunicorn (tests/test_frameworks.py): ``PostHogWSGIMiddleware``
around ``app.wsgi_app``; captures go through the default client.

With ``APP_TRACE=wsgi`` (under ``opentelemetry-instrument``: there is no Flask
instrumentation for this OpenTelemetry release), OpenTelemetry's WSGI middleware wraps
ours, so the request span starts before the identity context does.
"""

from __future__ import annotations

import os

from flask import Flask, request
from opentelemetry import trace

import posthog_otel
from posthog_otel.middleware import PostHogWSGIMiddleware

app = Flask(__name__)


@app.get("/health")
def health() -> dict[str, str]:
    return {"ok": "yes"}


@app.get("/hit")
def hit() -> dict[str, str]:
    if request.args.get("capture", "1") == "1":
        posthog_otel.default_client().capture("flask hit", properties={"i": int(request.args["i"])})
    return {"trace_id": f"{trace.get_current_span().get_span_context().trace_id:032x}"}


app.wsgi_app = PostHogWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
if os.environ.get("APP_TRACE") == "wsgi":
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)  # type: ignore[method-assign]
