"""A Starlette app with the ASGI middleware, installed by wrapping (``APP_MIDDLEWARE=wrap``)
or with ``add_middleware``; events wait in the queue until the server stops."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from posthog_otel import Client
from posthog_otel.middleware import PostHogASGIMiddleware

client = Client(flush_interval=60.0)


async def hit(request: Request) -> PlainTextResponse:
    client.capture("request", properties={"pid": os.getpid()})  # identity from the header
    return PlainTextResponse(str(os.getpid()))


app = Starlette(routes=[Route("/", hit)])
if os.environ.get("APP_MIDDLEWARE") == "add_middleware":
    app.add_middleware(PostHogASGIMiddleware)
else:
    app = PostHogASGIMiddleware(app)  # type: ignore[assignment]
