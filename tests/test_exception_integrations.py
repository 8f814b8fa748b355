"""``$exception`` events from the integrations (issue #12): the logging handler, the
request middleware, the span exporter; each path sends each exception exactly once."""

from __future__ import annotations

import gc
import logging
import logging.handlers
import queue
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from posthog_otel import Client, PostHogHandler, context

# File opens seen by an audit hook (which cannot be removed: it records only while a
# test asks it to, and only the paths asked for).
_watched: set[str] = set()
_opens: list[tuple[str, str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _watched and args and str(args[0]) in _watched:
        _opens.append((threading.current_thread().name, str(args[0])))


sys.addaudithook(_audit)


@pytest.fixture
def log_to(make_client) -> Iterator[Any]:
    """``log_to(**handler_options)``: a client and a logger ``app.exc`` feeding a
    ``PostHogHandler`` with those options (removed after the test)."""
    logger = logging.getLogger("app.exc")
    logger.setLevel(logging.DEBUG)
    saved = list(logger.handlers)

    def make(**options: Any) -> tuple[Client, logging.Logger]:
        # Only ours, set in the test's body: pytest attaches its capture handlers (which
        # keep the records, and their tracebacks) to non-propagating loggers when the
        # test's call phase starts.
        logger.propagate = False
        logger.handlers[:] = [PostHogHandler(client := make_client(), **options)]
        return client, logger

    yield make
    logger.handlers[:] = saved
    logger.propagate = True


def _exceptions(server, client) -> list[dict[str, Any]]:
    assert client.flush(5)
    return [e for e in server.events if e["event"] == "$exception"]


def _fail(message: str = "card declined") -> None:
    raise ValueError(message)


# ---------------------------------------------------------------------- logging


def test_logger_exception_becomes_an_exception_event_and_the_event(server, log_to):
    client, log = log_to()
    try:
        _fail()
    except ValueError:
        log.exception("payment_failed", extra={"distinct_id": "u1", "order": 7})
    (exc,) = _exceptions(server, client)
    props = exc["properties"]
    assert exc["distinct_id"] == "u1"
    assert props["$exception_level"] == "error"
    assert props["$exception_source"] == "python.logging"
    mechanism = props["$exception_list"][0]["mechanism"]
    assert mechanism == {"type": "logger", "handled": True, "synthetic": False, "exception_id": 0}
    assert props["$exception_type"] == "ValueError"
    assert props["$exception_message"] == "card declined"
    assert props["$log_message"] == "payment_failed"
    assert props["order"] == 7
    assert props["$logger_name"] == "app.exc"
    frames = props["$exception_list"][0]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "_fail" and "context_line" in frames[-1]
    # The plain analytics event is sent too (the default: dashboards keep counting it).
    assert Counter(server.event_names()) == Counter({"payment_failed": 1, "$exception": 1})


@pytest.mark.parametrize(
    ("level", "expected"),
    [(logging.WARNING, "warning"), (logging.ERROR, "error"), (logging.CRITICAL, "fatal")],
)
def test_record_level_sets_the_exception_level(server, log_to, level, expected):
    client, log = log_to()
    try:
        _fail()
    except ValueError:
        log.log(level, "failed", exc_info=True, extra={"distinct_id": "u1"})
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$exception_level"] == expected
    # A fatal record that does not end the process is still handled (EEM scenario).
    assert exc["properties"]["$exception_list"][0]["mechanism"]["handled"] is True


def test_records_without_identity_send_a_personless_exception_only(server, log_to):
    client, log = log_to()  # personless=False gates the plain events, not exceptions
    try:
        _fail()
    except ValueError:
        log.exception("anonymous_failure")
    log.info("anonymous_info")
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$process_person_profile"] is False
    assert server.event_names() == ["$exception"]
    (handler,) = log.handlers
    assert handler.skipped == 1  # the info record only


def test_exceptions_switch_and_event_with_exception(server, log_to):
    client, log = log_to(exceptions=False)
    log.error("event_only", exc_info=ValueError("a"), extra={"distinct_id": "u1"})
    (handler,) = log.handlers
    handler.exceptions, handler.event_with_exception = True, False
    log.error("exception_only", exc_info=ValueError("b"), extra={"distinct_id": "u1"})
    assert client.flush(5)
    assert server.event_names() == ["event_only", "$exception"]
    assert server.events[1]["properties"]["$log_message"] == "exception_only"


def test_exc_info_outside_an_except_block_is_a_plain_record(server, log_to):
    client, log = log_to()
    log.error("no_exception", exc_info=True, extra={"distinct_id": "u1"})
    assert client.flush(5)
    assert server.event_names() == ["no_exception"]


def test_traceback_text_behind_a_queue_handler_is_parsed(server, make_client):
    """``QueueHandler.prepare`` renders the traceback into ``exc_text`` and drops
    ``exc_info``: the frames come from that text."""
    client = make_client()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, PostHogHandler(client))
    logger = logging.getLogger("app.queued")
    logger.propagate = False
    handler = logging.handlers.QueueHandler(records)
    logger.addHandler(handler)
    listener.start()
    try:
        try:
            _fail("queued")
        except ValueError:
            logger.exception("failed", extra={"distinct_id": "u1"})
    finally:
        listener.stop()
        logger.removeHandler(handler)
        logger.propagate = True
    (exc,) = _exceptions(server, client)
    entry = exc["properties"]["$exception_list"][0]
    assert entry["type"] == "ValueError" and entry["value"] == "queued"
    assert entry["stacktrace"]["frames"][-1]["function"] == "_fail"


def test_handler_reads_no_source_file_and_keeps_no_frame(server, log_to, tmp_path):
    """The traceback becomes plain data on the logging thread (no frame kept alive
    in the queue) and the source file is read on the flush thread only."""
    source = tmp_path / "failing_module.py"
    source.write_text("def fail(holder):\n    raise ValueError('from a file')\n")
    namespace: dict[str, Any] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)

    class Held:
        pass

    held = Held()
    ref = weakref.ref(held)
    client, log = log_to()
    _watched.add(str(source))
    try:
        try:
            namespace["fail"](held)
        except ValueError:
            log.exception("failed", extra={"distinct_id": "u1"})
        del held
        gc.collect()
        assert ref() is None  # nothing of the failed frame is queued
        assert _opens == []  # nothing read on the logging thread
        (exc,) = _exceptions(server, client)
    finally:
        _watched.discard(str(source))
    frame = exc["properties"]["$exception_list"][0]["stacktrace"]["frames"][-1]
    assert frame["context_line"] == "    raise ValueError('from a file')"
    assert {thread for thread, _ in _opens} == {"posthog_otel-flush"}
    _opens.clear()


def test_identity_context_and_span_ids(server, log_to):
    client, log = log_to()
    with context(distinct_id="ctx-user", session_id="s1"):
        log.error("failed", exc_info=ValueError("x"))
    (exc,) = _exceptions(server, client)
    assert exc["distinct_id"] == "ctx-user"
    assert exc["properties"]["$session_id"] == "s1"


# ---------------------------------------------------------------------- middleware


class CheckoutError(Exception):
    pass


def _asgi_request(app: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    import asyncio

    from posthog_otel.middleware import PostHogASGIMiddleware  # noqa: F401 - by callers

    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "path": "/pay",
        "headers": [(b"host", b"shop.example"), *(headers or [])],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    asyncio.run(app(scope, receive, send))


def test_asgi_exception_escaping_is_captured_and_reraised_unchanged(server, make_client):
    from posthog_otel.middleware import PostHogASGIMiddleware

    raised = CheckoutError("declined")

    async def app(scope, receive, send):
        raise raised

    client = make_client()
    middleware = PostHogASGIMiddleware(app, client=client)
    with pytest.raises(CheckoutError) as info:
        _asgi_request(middleware, [(b"x-posthog-distinct-id", b"u1")])
    assert info.value is raised  # the very exception, unchanged
    (exc,) = _exceptions(server, client)
    props = exc["properties"]
    assert exc["distinct_id"] == "u1"
    assert props["$exception_source"] == "asgi.middleware"
    assert props["$exception_level"] == "error"
    mechanism = props["$exception_list"][0]["mechanism"]
    assert mechanism == {
        "type": "middleware",
        "handled": False,
        "synthetic": False,
        "exception_id": 0,
    }
    assert props["$current_url"] == "https://shop.example/pay"
    assert props["$request_method"] == "POST"


def test_asgi_without_identity_is_personless_and_switch_off(server, make_client):
    from posthog_otel.middleware import PostHogASGIMiddleware

    async def app(scope, receive, send):
        raise CheckoutError("no user")

    client = make_client()
    with pytest.raises(CheckoutError):
        _asgi_request(PostHogASGIMiddleware(app, client=client))
    with pytest.raises(CheckoutError):
        _asgi_request(PostHogASGIMiddleware(app, client=client, capture_exceptions=False))
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$process_person_profile"] is False


def test_wsgi_exception_in_app_and_in_body_captured_and_reraised(server, make_client):
    from posthog_otel.middleware import PostHogWSGIMiddleware

    def failing_app(environ, start_response):
        raise CheckoutError("in app")

    def failing_body(environ, start_response):
        start_response("200 OK", [])
        yield b"first"
        raise CheckoutError("in body")

    client = make_client()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/cart",
        "HTTP_HOST": "shop.example",
        "HTTP_X_POSTHOG_DISTINCT_ID": "u2",
    }
    with pytest.raises(CheckoutError, match="in app"):
        PostHogWSGIMiddleware(failing_app, client=client)(dict(environ), lambda *a: None)
    body = PostHogWSGIMiddleware(failing_body, client=client)(dict(environ), lambda *a: None)
    assert next(iter(body)) == b"first"
    with pytest.raises(CheckoutError, match="in body"):
        next(body)
    events = _exceptions(server, client)
    assert sorted(e["properties"]["$exception_message"] for e in events) == ["in app", "in body"]
    for event in events:
        assert event["distinct_id"] == "u2"
        assert event["properties"]["$exception_source"] == "wsgi.middleware"
        assert event["properties"]["$exception_list"][0]["mechanism"]["handled"] is False
        assert event["properties"]["$current_url"] == "http://shop.example/cart"


def test_logged_then_escaping_exception_is_sent_once(server, make_client):
    """A view that logs the exception and re-raises it: one ``$exception`` (the logged
    one), not a second from the middleware."""
    from posthog_otel.middleware import PostHogWSGIMiddleware

    client = make_client()
    logger = logging.getLogger("app.views")
    logger.propagate = False
    handler = PostHogHandler(client)
    logger.addHandler(handler)

    def app(environ, start_response):
        try:
            raise CheckoutError("logged and re-raised")
        except CheckoutError:
            logger.exception("view_failed")
            raise

    try:
        with pytest.raises(CheckoutError):
            PostHogWSGIMiddleware(app, client=client)({"HTTP_X_POSTHOG_DISTINCT_ID": "u"}, None)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$exception_source"] == "python.logging"
    assert client.stats.dropped["deduplicated"] == 1


# ---------------------------------------------------------------------- spans


@pytest.fixture
def tracer_of(make_client):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from posthog_otel import PostHogSpanExporter

    providers = []

    def make(**options: Any) -> tuple[Client, Any]:
        client = make_client()
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client, **options)))
        providers.append(provider)
        return client, provider.get_tracer("test")

    yield make
    for provider in providers:
        provider.shutdown()


def test_span_recorded_exception_becomes_an_exception_event(server, tracer_of):
    client, tracer = tracer_of()

    def inner():
        raise RootError("db down")

    def outer():
        try:
            inner()
        except RootError as exc:
            raise CheckoutError("checkout failed") from exc

    with tracer.start_as_current_span("db", attributes={"posthog.distinct_id": "u1"}) as span:
        try:
            outer()
        except CheckoutError as exc:
            span.record_exception(exc)
        ids = span.get_span_context()
    exceptions = _exceptions(server, client)
    (exc,) = exceptions
    props = exc["properties"]
    assert exc["distinct_id"] == "u1"
    assert props["$trace_id"] == f"{ids.trace_id:032x}"
    assert props["$span_id"] == f"{ids.span_id:016x}"
    assert props["$exception_source"] == "opentelemetry.span_exporter"
    exc_list = props["$exception_list"]
    assert [e["type"] for e in exc_list] == ["CheckoutError", "RootError"]
    assert exc_list[0]["module"] == __name__
    assert exc_list[1]["mechanism"]["source"] == "cause"
    assert "handled" not in exc_list[0]["mechanism"]  # unknown for a span
    assert [f["function"] for f in exc_list[1]["stacktrace"]["frames"]][-2:] == [
        "outer",
        "inner",
    ]
    assert "context_line" in exc_list[1]["stacktrace"]["frames"][-1]


def test_escaping_span_exception_without_identity_is_personless(server, tracer_of):
    client, tracer = tracer_of()
    # The SDK records the exception escaping the span.
    with pytest.raises(CheckoutError), tracer.start_as_current_span("job"):
        raise CheckoutError("escaped")
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$process_person_profile"] is False
    assert server.event_names() == ["$exception"]  # the span itself has no identity


def test_span_exception_without_stacktrace_has_no_frames(server, tracer_of):
    client, tracer = tracer_of()
    with tracer.start_as_current_span("job", attributes={"user.id": "u1"}) as span:
        span.add_event(
            "exception",
            {"exception.type": "billing.errors.QuotaError", "exception.message": "over"},
        )
    (exc,) = _exceptions(server, client)
    entry = exc["properties"]["$exception_list"][0]
    assert entry["type"] == "QuotaError" and entry["module"] == "billing.errors"
    assert entry["value"] == "over"
    assert "stacktrace" not in entry  # never a stack of the exporter's thread


def test_span_exceptions_switch(server, tracer_of):
    client, tracer = tracer_of(exceptions=False)
    with tracer.start_as_current_span("job", attributes={"user.id": "u1"}) as span:
        span.record_exception(CheckoutError("x"))
    assert client.flush(5)
    assert server.event_names() == ["job"]


class RootError(Exception):
    pass


def test_failure_seen_by_the_middleware_and_the_request_span_is_one_event(server, tracer_of):
    from posthog_otel.middleware import PostHogASGIMiddleware

    client, tracer = tracer_of()

    async def app(scope, receive, send):
        raise CheckoutError("declined")

    middleware = PostHogASGIMiddleware(app, client=client)

    async def instrumented(scope, receive, send):  # an instrumentation outside ours
        with tracer.start_as_current_span("POST /pay", attributes={"user.id": "u1"}):
            await middleware(scope, receive, send)

    with pytest.raises(CheckoutError):
        _asgi_request(instrumented, [(b"x-posthog-distinct-id", b"u1")])
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$exception_source"] == "asgi.middleware"
    assert exc["properties"]["$trace_id"]  # captured inside the request span
    assert client.stats.dropped["deduplicated"] == 1  # the span's copy
