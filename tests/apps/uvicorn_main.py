"""``uvicorn.run`` from a script that captured before serving, without the middleware
(so no lifespan flush): uvicorn restores the SIGTERM handler it found (ours) after its
graceful shutdown and raises the signal again, and ours flushes."""

from __future__ import annotations

import os
import sys
from typing import Any

import uvicorn

from posthog_otel import Client

client = Client(flush_interval=60.0)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")  # uvicorn then runs without one
    headers = dict(scope["headers"])
    client.capture("request", headers[b"x-posthog-distinct-id"].decode(), {"pid": os.getpid()})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


if __name__ == "__main__":
    client.capture("boot", os.environ["SCENARIO"] + "-boot")  # before serving, main thread
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), lifespan="auto")
