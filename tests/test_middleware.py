"""ASGI and WSGI middleware, driven through httpx's ASGI/WSGI transports."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from posthog_otel import get_distinct_id
from posthog_otel.middleware import (
    PostHogASGIMiddleware,
    PostHogWSGIMiddleware,
    sanitize_header,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  user-123 \t", "user-123"),
        ("us\x00er\x1f-1\x7f", "user-1"),
        ("", None),
        ("   ", None),
        ("\x01\x02", None),
        ("x" * 1500, "x" * 1000),
        (["", " second "], "second"),
        (b"bytes-id", "bytes-id"),
        (42, None),
        (None, None),
    ],
)
def test_sanitize_header(value, expected):
    assert sanitize_header(value) == expected


def make_asgi(client, captured):
    async def app(scope, receive, send):
        await asyncio.sleep(0)
        captured.append(get_distinct_id())
        client.capture("Backend Work")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return PostHogASGIMiddleware(app)


def test_asgi_headers_become_identity(server, make_client):
    client = make_client()
    captured = []
    app = make_asgi(client, captured)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            await http.get(
                "/cart?x=1",
                headers={
                    "X-PostHog-Distinct-Id": " user-123 ",
                    "x-posthog-session-id": "session-123",
                    "User-Agent": "tests/1.0",
                },
            )
            await http.get("/anon", headers={"X-POSTHOG-SESSION-ID": "session-9"})

    asyncio.run(run())
    assert get_distinct_id() is None
    client.flush(5)
    identified, anonymous = server.events
    assert identified["distinct_id"] == "user-123"
    props = identified["properties"]
    assert props["$session_id"] == "session-123"
    assert props["$current_url"] == "http://shop.test/cart"  # no query string by default
    assert props["$request_method"] == "GET" and props["$request_path"] == "/cart"
    assert props["$user_agent"] == "tests/1.0"
    assert anonymous["properties"]["$process_person_profile"] is False
    assert anonymous["properties"]["$session_id"] == "session-9"
    assert captured == ["user-123", None]


def test_asgi_concurrent_requests_are_isolated(server, make_client):
    client = make_client()
    captured = []
    app = make_asgi(client, captured)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await asyncio.gather(
                *(http.get("/", headers={"X-POSTHOG-DISTINCT-ID": f"user-{i}"}) for i in range(50))
            )

    asyncio.run(run())
    client.flush(5)
    assert sorted(e["distinct_id"] for e in server.events) == sorted(f"user-{i}" for i in range(50))
    assert sorted(captured) == sorted(f"user-{i}" for i in range(50))


def test_asgi_lifespan_passes_through():
    calls = []

    async def app(scope, receive, send):
        calls.append((scope["type"], get_distinct_id()))

    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(PostHogASGIMiddleware(app)({"type": "lifespan"}, receive, send))
    assert calls == [("lifespan", None)]
    # The app took no part in the lifespan: the middleware served it (to flush at its end).
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_wsgi_headers_and_streaming_body(server, make_client):
    client = make_client()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        client.capture("handler")

        def body():
            client.capture("streaming")
            yield b"a"
            client.capture("streaming")
            yield b"b"

        return body()

    wsgi = PostHogWSGIMiddleware(app)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://w.test") as h:
        response = h.get("/p", headers={"X-POSTHOG-DISTINCT-ID": "wsgi-user"})
    assert response.text == "ab"
    assert get_distinct_id() is None  # nothing leaks out of the request
    client.flush(5)
    assert [e["distinct_id"] for e in server.events] == ["wsgi-user"] * 3
    assert server.events[0]["properties"]["$current_url"] == "http://w.test/p"


def test_wsgi_threads_are_isolated(server, make_client):
    client = make_client()
    barrier = threading.Barrier(8)

    def app(environ, start_response):
        barrier.wait(5)
        client.capture("req")
        start_response("200 OK", [])
        return [b""]

    wsgi = PostHogWSGIMiddleware(app)

    def request(i):
        with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://w") as h:
            h.get("/", headers={"X-POSTHOG-DISTINCT-ID": f"u{i}"})

    threads = [threading.Thread(target=request, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.flush(5)
    assert sorted(e["distinct_id"] for e in server.events) == sorted(f"u{i}" for i in range(8))


def test_flags_need_identity_not_a_session():
    # HDR-08 is the flags issue's; the middleware must not make up an id for it.
    def app(environ, start_response):
        start_response("200 OK", [])
        return [str(get_distinct_id()).encode()]

    wsgi = PostHogWSGIMiddleware(app)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://w") as h:
        assert h.get("/", headers={"X-POSTHOG-SESSION-ID": "s"}).text == "None"
