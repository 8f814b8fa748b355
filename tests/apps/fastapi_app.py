"""FastAPI under uvicorn (tests/test_frameworks.py).

``APP_MODE``:
- ``add_middleware`` / ``wrapped``: ``instrument()`` on our own provider and
  ``FastAPIInstrumentor.instrument_app``; the identity middleware added with
  ``app.add_middleware`` (it then runs inside the instrumentation's middleware) or
  wrapping the whole app (outside it). Lifespan shutdown flushes.
- ``zero-code``: run under ``opentelemetry-instrument`` (``OTEL_TRACES_EXPORTER=posthog``):
  FastAPI is instrumented automatically; the middleware is added with ``add_middleware``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry import trace

import posthog_otel
from posthog_otel.middleware import PostHogASGIMiddleware

MODE = os.environ["APP_MODE"]

if MODE == "zero-code":
    client = posthog_otel.default_client()
    provider = None
else:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from posthog_otel.otel import instrument

    client = posthog_otel.Client()  # POSTHOG_API_KEY / POSTHOG_HOST
    provider = TracerProvider(resource=Resource.create({"service.name": "fastapi-app"}))
    instrument(provider, client)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    if provider is not None:
        provider.force_flush()  # through instrument(): the span batch, then the client


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"ok": "yes"}


@app.get("/hit")
async def hit(i: int, capture: int = 1) -> dict[str, str]:
    if capture:
        client.capture("api hit", properties={"i": i})
    return {"trace_id": f"{trace.get_current_span().get_span_context().trace_id:032x}"}


if provider is not None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)

if MODE == "wrapped":
    asgi = PostHogASGIMiddleware(app)
else:
    app.add_middleware(PostHogASGIMiddleware)
    asgi = app
