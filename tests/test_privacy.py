"""Secrets and privacy: credentials in the host never reach a log line or a repr, a
secret key over plain http is warned about, and the middleware keeps query strings and
oversized headers out of analytics."""

from __future__ import annotations

import asyncio
import base64
import logging

import httpx
import pytest

from posthog_otel import Client
from posthog_otel.middleware import (
    MAX_HEADER_LENGTH,
    PostHogASGIMiddleware,
    PostHogWSGIMiddleware,
)

from .conftest import API_KEY

PASSWORD = "s3cr3t-pa55"


def _with_credentials(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://alice:{PASSWORD}@{rest}"


# ------------------------------------------------------------------ credentials in the host


def test_credentials_in_host_stay_out_of_httpx_logs_and_repr(server, caplog):
    caplog.set_level(logging.INFO, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    errors: list[str] = []
    client = Client(
        API_KEY,
        host=_with_credentials(server.url),
        flush_interval=60.0,
        max_retries=0,
        on_error=lambda exc, events: errors.append(str(exc)),
        _exit_hook=False,
    )
    try:
        assert PASSWORD not in repr(client)
        assert "alice:***@" in repr(client)
        assert PASSWORD not in client.host
        client.capture("e", "u1")
        assert client.flush(5)
        server.fail_next(1, 400)
        client.capture("rejected", "u1")
        client.flush(5)
    finally:
        client.close(2)
    request = server.capture_requests()[0]
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert request.headers.get("authorization") == f"Basic {expected}"
    # httpx logs no record of our own requests at all (issue #10).
    assert not any(r.name == "httpx" for r in caplog.records)
    assert errors  # on_error saw the 400
    for text in (*(r.getMessage() for r in caplog.records), caplog.text, *errors):
        assert PASSWORD not in text


def test_credentials_stay_out_of_transport_error_text(caplog):
    caplog.set_level(logging.INFO)
    errors: list[str] = []
    client = Client(
        API_KEY,
        host=f"http://bob:{PASSWORD}@127.0.0.1:9",  # connection refused
        max_retries=0,
        max_retry_cycles=1,
        on_error=lambda exc, events: errors.append(str(exc)),
        _exit_hook=False,
    )
    client.capture("e", "u1")
    client.flush(5)
    client.close(1)
    assert errors
    assert PASSWORD not in caplog.text and all(PASSWORD not in e for e in errors)


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("http://posthog.internal.example", True),
        ("https://posthog.internal.example", False),
        ("http://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
        ("http://[::1]:8000", False),
    ],
)
def test_secret_key_over_plain_http_is_warned_once(monkeypatch, caplog, host, warned):
    from posthog_otel import _options

    monkeypatch.setattr(_options, "_warned_cleartext", [])
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    for _ in range(3):
        Client(API_KEY, host=host, personal_api_key="phx_secret", _exit_hook=False).close(0)
    count = sum("plain http://" in r.getMessage() for r in caplog.records)
    assert count == (1 if warned else 0)


# ------------------------------------------------------------------ middleware


def _wsgi_properties(server, make_client, **options):
    client = make_client()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        client.capture("handler")
        return [b"ok"]

    wsgi = PostHogWSGIMiddleware(app, **options)
    with httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://w.test") as h:
        h.get(
            "/reset/" + "p" * 5000 + "?token=secret",
            headers={"X-POSTHOG-DISTINCT-ID": "u1", "User-Agent": "A" * 200_000},
        )
    client.flush(5)
    return server.events[-1]["properties"]


def test_wsgi_strips_the_query_string_and_caps_headers(server, make_client):
    props = _wsgi_properties(server, make_client)
    assert "token" not in props["$current_url"] and "?" not in props["$current_url"]
    assert len(props["$user_agent"]) == MAX_HEADER_LENGTH
    assert len(props["$request_path"]) == MAX_HEADER_LENGTH
    assert props["$current_url"].startswith("http://w.test/reset/ppp")


def test_wsgi_keeps_the_query_string_when_asked(server, make_client):
    props = _wsgi_properties(server, make_client, capture_query_string=True)
    assert props["$current_url"].endswith("?token=secret")


def _asgi_properties(server, make_client, host: str, **options):
    client = make_client()

    async def app(scope, receive, send):
        client.capture("handler")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    asgi = PostHogASGIMiddleware(app, **options)

    async def run():
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            await http.get(
                "/cart?token=secret",
                headers={"X-POSTHOG-DISTINCT-ID": "u1", "User-Agent": "A" * 200_000, "Host": host},
            )

    asyncio.run(run())
    client.flush(5)
    return server.events[-1]["properties"]


def test_asgi_strips_the_query_string_and_caps_headers(server, make_client):
    props = _asgi_properties(server, make_client, "h" * 200_000)
    assert "token" not in props["$current_url"]
    assert len(props["$user_agent"]) == MAX_HEADER_LENGTH
    assert len(props["$current_url"]) < 3 * MAX_HEADER_LENGTH


def test_asgi_keeps_the_query_string_when_asked(server, make_client):
    props = _asgi_properties(server, make_client, "shop.test", capture_query_string=True)
    assert props["$current_url"] == "http://shop.test/cart?token=secret"


def test_a_rejected_host_is_not_echoed_with_its_password():
    with pytest.raises(ValueError) as info:
        Client(API_KEY, host=f"alice:{PASSWORD}@posthog.example", _exit_hook=False)
    assert PASSWORD not in str(info.value)
    assert "posthog.example" in str(info.value)


@pytest.mark.parametrize(
    ("host", "secret"),
    [
        ("https://alice:p@ss@posthog.example", "ss@"),  # an '@' left unencoded
        ("https://alice:pa/ss@posthog.example", "pa/ss"),  # a '/' left unencoded
        ("https://t0ken-secret@posthog.example", "t0ken-secret"),  # a token as user name
    ],
)
def test_every_form_of_host_credentials_is_masked(host, secret):
    from posthog_otel._config import mask_credentials

    assert secret not in mask_credentials(host)
    try:
        client = Client(API_KEY, host=host, _exit_hook=False)
    except ValueError as exc:  # refused: the message must not show it either
        assert secret not in str(exc)
    else:
        assert secret not in repr(client) and secret not in client.host
        client.close(0)
