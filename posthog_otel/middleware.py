"""Request middleware: ``X-POSTHOG-DISTINCT-ID`` / ``X-POSTHOG-SESSION-ID`` into the
identity context, so every capture, log record, structlog event and span of the
request is attributed to that person (contract HDR).

The headers identify for analytics only: never use them to authenticate or authorize.
Explicit values (a ``distinct_id`` passed to a call, an inner ``context``) win.

Request properties come from what the client sent: the ``Host`` header (client-controlled,
so ``$current_url`` may name any host), the path and the ``User-Agent``, each cleaned and
capped at ``MAX_HEADER_LENGTH`` characters. The query string is left out of
``$current_url`` unless ``capture_query_string=True``: it often carries secrets (reset
tokens, signed links) that do not belong in analytics.

The ASGI middleware also takes part in the ``lifespan`` protocol: when the application
has completed its shutdown, every open client is flushed (each within its
``shutdown_timeout``) before the server is told, because servers may end the process
right after (uvicorn re-raises SIGTERM, so no ``atexit`` hook runs).

Error tracking: an exception escaping the application is sent as an ``$exception``
event (``handled: false``, mechanism ``middleware``, ``$exception_source``
``asgi.middleware`` / ``wsgi.middleware``) with the request's identity and properties,
then re-raised unchanged, to ``client`` (the default client when none is given);
``capture_exceptions=False`` turns that off.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from ._context import IdentityContext, _current, context
from ._exc_snapshot import Boundary
from ._log import logger

if TYPE_CHECKING:
    from .client import Client

__all__ = ["PostHogASGIMiddleware", "PostHogWSGIMiddleware", "sanitize_header"]

MAX_HEADER_LENGTH = 1000

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def sanitize_header(value: object) -> str | None:
    """A header value fit for identity: a string (the first valid one of a list),
    trimmed, without control characters, at most 1000 characters; else ``None``."""
    if isinstance(value, list | tuple):
        for item in value:
            cleaned = sanitize_header(item)
            if cleaned:
                return cleaned
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    # Cut before cleaning: a 200 KB header must not cost a scan of every character.
    value = value[: 2 * MAX_HEADER_LENGTH]
    if value.isprintable():  # the usual case, at C speed: no control characters at all
        cleaned = value.strip()
    else:
        cleaned = "".join(ch for ch in value if unicodedata.category(ch) != "Cc").strip()
    return cleaned[:MAX_HEADER_LENGTH] or None


def _request_properties(
    method: object,
    scheme: object,
    host: object,
    path: str,
    query: str | None,
    agent: object,
) -> dict[str, Any]:
    """The request's context properties, every header-derived value capped; ``query``
    is ``None`` unless the application opted in to capturing query strings."""
    path = path[:MAX_HEADER_LENGTH]
    properties: dict[str, Any] = {
        "$request_method": sanitize_header(method),
        "$request_path": path,
    }
    host = sanitize_header(host)
    if host:
        url = f"{sanitize_header(scheme) or 'http'}://{host}{path}"
        if query:
            url += "?" + query[:MAX_HEADER_LENGTH]
        properties["$current_url"] = url
    agent = sanitize_header(agent)
    if agent:
        properties["$user_agent"] = agent
    return properties


ASGI_ESCAPED = Boundary(
    level="error", mechanism="middleware", handled=False, source="asgi.middleware"
)
WSGI_ESCAPED = Boundary(
    level="error", mechanism="middleware", handled=False, source="wsgi.middleware"
)


class _Reporter:
    """Sends an exception escaping the application; never raises."""

    def __init__(self, client: Client | None, capture_exceptions: bool, boundary: Boundary):
        self.client = client
        self.capture_exceptions = capture_exceptions
        self._boundary = boundary

    def report(self, exc: BaseException) -> None:
        if not self.capture_exceptions:
            return
        try:
            client = self.client
            if client is None:
                from .client import default_client

                client = default_client()
            client.exceptions.send(exc, self._boundary)
        except Exception:
            logger.debug("could not capture an exception escaping the app", exc_info=True)


class PostHogASGIMiddleware:
    """ASGI middleware (Starlette, FastAPI, Django ASGI, ...): one identity context per
    HTTP or WebSocket connection, carried into the tasks the request starts; an
    exception escaping the application is captured, then re-raised."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        request_properties: bool = True,
        capture_query_string: bool = False,
        client: Client | None = None,
        capture_exceptions: bool = True,
    ) -> None:
        self.app = app
        self.request_properties = request_properties
        self.capture_query_string = capture_query_string
        self._reporter = _Reporter(client, capture_exceptions, ASGI_ESCAPED)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") == "lifespan":
            await _lifespan(self.app, scope, receive, send)
            return
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        distinct_id = session_id = host = agent = None
        try:
            for raw_name, raw_value in scope.get("headers") or ():
                name = raw_name.lower()
                if name == b"x-posthog-distinct-id" and distinct_id is None:
                    distinct_id = sanitize_header(raw_value)
                elif name == b"x-posthog-session-id" and session_id is None:
                    session_id = sanitize_header(raw_value)
                elif name == b"host":
                    host = raw_value
                elif name == b"user-agent":
                    agent = raw_value
            properties = (
                _request_properties(
                    scope.get("method"),
                    scope.get("scheme", "http"),
                    host,
                    scope.get("path", ""),
                    (scope.get("query_string") or b"").decode("latin-1")
                    if self.capture_query_string
                    else None,
                    agent,
                )
                if self.request_properties
                else None
            )
        except Exception:  # a malformed scope only means no identity (HDR-12)
            distinct_id = session_id = None
            properties = None
        with context(distinct_id=distinct_id, session_id=session_id, properties=properties):
            stamp_request_span()
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                self._reporter.report(exc)
                raise


_SHUTDOWN_DONE = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


async def _lifespan(app: ASGIApp, scope: Scope, receive: Any, send: Any) -> None:
    """Run the application's lifespan, flushing the clients once its shutdown is done.

    An application without lifespan support raises (or returns) before it receives its
    first message, as the ASGI spec asks; the lifespan is then served here (startup
    completes at once), so that the flush at shutdown still happens. An error after the
    application received a message is its own failure and goes to the server; when it
    comes during the shutdown (or the application returns from it without a word), the
    clients are flushed first: the server may end the process right after."""
    received = stopping = flushed = False

    async def receive_app() -> Any:
        nonlocal received, stopping
        message = await receive()
        received = True
        if isinstance(message, dict) and message.get("type") == "lifespan.shutdown":
            stopping = True
        return message

    async def send_app(message: Any) -> None:
        nonlocal flushed
        if isinstance(message, dict) and message.get("type") in _SHUTDOWN_DONE:
            flushed = True
            await _flush_clients()
        await send(message)

    try:
        await app(scope, receive_app, send_app)
    except Exception as exc:
        if received:
            if stopping and not flushed:  # its shutdown failed without telling the server
                await _flush_clients()
            raise
        logger.debug("the application does not support lifespan (%r); served here", exc)
    if received:
        if stopping and not flushed:  # it returned without telling the server
            await _flush_clients()
        return
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await _flush_clients()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _flush_clients() -> None:
    """Flush every open client, off the event loop when it is asyncio's."""
    client_module: Any = sys.modules.get("posthog_otel._lifecycle")
    if client_module is None:
        return  # no client was ever made: nothing to flush
    flush = client_module.flush_open_clients
    asyncio: Any = sys.modules.get("asyncio")
    try:
        loop = asyncio.get_running_loop()
    except (AttributeError, RuntimeError):  # another event loop (trio): block briefly
        flush()
        return
    await loop.run_in_executor(None, flush)


class PostHogWSGIMiddleware:
    """WSGI middleware (Flask, Django, ...): one identity context per request, also
    while the response body is iterated; an exception escaping the application (or
    its response body) is captured, then re-raised."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        request_properties: bool = True,
        capture_query_string: bool = False,
        client: Client | None = None,
        capture_exceptions: bool = True,
    ) -> None:
        self.app = app
        self.request_properties = request_properties
        self.capture_query_string = capture_query_string
        self._reporter = _Reporter(client, capture_exceptions, WSGI_ESCAPED)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        identity: dict[str, Any] = {
            "distinct_id": sanitize_header(environ.get("HTTP_X_POSTHOG_DISTINCT_ID")),
            "session_id": sanitize_header(environ.get("HTTP_X_POSTHOG_SESSION_ID")),
        }
        if self.request_properties:
            identity["properties"] = _request_properties(
                environ.get("REQUEST_METHOD"),
                environ.get("wsgi.url_scheme", "http"),
                environ.get("HTTP_HOST") or environ.get("SERVER_NAME"),
                environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                environ.get("QUERY_STRING", "") if self.capture_query_string else None,
                environ.get("HTTP_USER_AGENT"),
            )
        with context(**identity) as ctx:
            stamp_request_span()
            try:
                result = self.app(environ, start_response)
            except Exception as exc:
                self._reporter.report(exc)
                raise
        return _InContext(result, ctx, self._reporter.report)


def stamp_request_span() -> None:
    """Give the request's OpenTelemetry span the current identity, when an instrumentation
    that runs outside this middleware (``FastAPIInstrumentor`` always does) already
    started it. Only when our OpenTelemetry integration is loaded: it is never imported
    from here."""
    otel = sys.modules.get("posthog_otel.otel")
    if otel is not None:
        otel.stamp_request_span()


class _InContext:
    """A WSGI response body iterated inside the request's identity context, which is
    set around each chunk only, so nothing leaks into the server between chunks. The
    very context the app ran in (not a copy): flag overrides set there still apply."""

    def __init__(
        self,
        result: Iterable[bytes],
        ctx: IdentityContext,
        report: Callable[[BaseException], None],
    ) -> None:
        self._result = result
        self._iterator: Iterator[bytes] | None = None
        self._ctx = ctx
        self._report = report

    def __iter__(self) -> _InContext:
        return self

    def __next__(self) -> bytes:
        token = _current.set(self._ctx)
        try:
            if self._iterator is None:
                self._iterator = iter(self._result)
            return next(self._iterator)
        except StopIteration:
            raise
        except Exception as exc:
            self._report(exc)
            raise
        finally:
            _current.reset(token)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()
