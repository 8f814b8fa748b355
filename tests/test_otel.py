"""PostHogSpanExporter and instrument() with the real OpenTelemetry SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from posthog_otel import PostHogSpanExporter, context
from posthog_otel.otel import instrument

from .conftest import API_KEY, fresh


@pytest.fixture
def provider():
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    yield provider
    provider.shutdown()


def test_span_with_identity_becomes_event(server, make_client, provider):
    client = make_client()
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("checkout", attributes={"posthog.distinct_id": "u1"}) as s:
        s.set_attribute("cart.items", 3)
        s.set_attribute("session.id", "sess-1")
        with tracer.start_as_current_span("db query") as child:
            child.set_attribute("db.system", "postgres")
        s.set_status(Status(StatusCode.ERROR, "boom"))
        ids = s.get_span_context()
    client.flush(5)
    (event,) = server.events  # the child span carries no identity: no event
    assert event["event"] == "checkout"
    assert event["distinct_id"] == "u1"
    props = event["properties"]
    assert props["cart.items"] == 3
    assert props["$trace_id"] == f"{ids.trace_id:032x}"
    assert props["$span_id"] == f"{ids.span_id:016x}"
    assert "$parent_span_id" not in props
    assert props["$span_status"] == "ERROR"
    assert props["$service_name"] == "checkout"
    assert props["$session_id"] == "sess-1"
    assert props["$duration_ms"] >= 0
    assert "posthog.distinct_id" not in props and "session.id" not in props


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"posthog.distinct_id": "a", "user.id": "b"}, "a"),
        ({"posthogDistinctId": "a", "distinct_id": "b"}, "a"),
        ({"distinct_id": "a", "user.id": "b"}, "a"),
        ({"user.id": "a", "enduser.id": "b"}, "a"),
        ({"enduser.id": 42}, "42"),
    ],
)
def test_identity_key_order(server, make_client, provider, attributes, expected):
    client = make_client()
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client)))
    with provider.get_tracer("t").start_as_current_span("op", attributes=attributes):
        pass
    client.flush(5)
    assert server.events[0]["distinct_id"] == expected


def test_posthog_event_attribute_names_the_event_and_timestamp_is_span_end(
    server, make_client, provider
):
    from datetime import datetime, timezone

    client = make_client()
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client)))
    tracer = provider.get_tracer("t")
    span = tracer.start_span("POST /orders", attributes={"posthog.event": "order_placed"})
    span.set_attribute("user.id", "u7")
    span.end(end_time=1_700_000_000_500_000_000)
    client.flush(5)
    (event,) = server.events
    assert event["event"] == "order_placed"
    assert datetime.fromisoformat(event["timestamp"]) == datetime.fromtimestamp(
        1_700_000_000.5, timezone.utc
    )
    assert "posthog.event" not in event["properties"]


def test_batch_processor_and_bare_exporter_need_client_flush(server, make_client, provider):
    client = make_client()
    provider.add_span_processor(BatchSpanProcessor(PostHogSpanExporter(client)))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"user.id": "u"}):
        pass
    assert provider.force_flush()
    assert client.flush(5)
    assert server.event_names() == ["op"]


def test_instrument_stamps_context_identity_on_entry_spans(server, make_client, provider):
    client = make_client()
    instrument(provider, client)
    tracer = provider.get_tracer("t")
    with (
        context(distinct_id="ctx-user", session_id="s-1"),
        tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER),
    ):
        with tracer.start_as_current_span("SELECT cart"):
            pass
        with tracer.start_as_current_span("tracked", attributes={"posthog.event": "viewed"}):
            pass
    with tracer.start_as_current_span("no identity"):
        pass
    assert provider.force_flush()  # through instrument(), a provider flush delivers
    names = server.event_names()
    assert sorted(names) == ["GET /cart", "viewed"]
    for event in server.events:
        assert event["distinct_id"] == "ctx-user"
        assert event["properties"]["$session_id"] == "s-1"
        assert "posthog.context_distinct_id" not in event["properties"]
    child = next(e for e in server.events if e["event"] == "viewed")
    assert "$parent_span_id" in child["properties"]


def test_instrument_reads_baggage(server, make_client, provider):
    client = make_client()
    instrument(provider, client)
    token = otel_context.attach(baggage.set_baggage("posthog.distinct_id", "baggage-user"))
    try:
        with provider.get_tracer("t").start_as_current_span("root"):
            pass
    finally:
        otel_context.detach(token)
    provider.force_flush()
    assert server.events[0]["distinct_id"] == "baggage-user"


def test_exporter_shutdown_does_not_close_a_users_client(server, make_client):
    client = make_client()
    exporter = PostHogSpanExporter(client)
    exporter.shutdown()
    assert client.capture("still works", "u")
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert exporter.export([]) is SpanExportResult.FAILURE


def test_exporter_owned_client_is_closed_by_shutdown(server, monkeypatch):
    monkeypatch.setenv("POSTHOG_API_KEY", API_KEY)
    monkeypatch.setenv("POSTHOG_HOST", server.url)
    provider = TracerProvider()
    exporter = PostHogSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"user.id": "u"}):
        pass
    provider.shutdown()
    assert server.event_names() == ["op"]
    assert exporter.client.capture("after", "u") is None


def test_exporter_without_key_never_raises(server, monkeypatch, caplog):
    """Zero-code without an API key: the exporter's own client is disabled (said once),
    every span is refused as ``disabled`` and counted, nothing is sent, nothing raises
    (SimpleSpanProcessor would only log an exception: the log is checked too)."""
    import logging

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.delenv("POSTHOG_PROJECT_API_KEY", raising=False)
    monkeypatch.setenv("POSTHOG_HOST", server.url)
    provider = TracerProvider()
    exporter = PostHogSpanExporter()
    assert exporter.client.disabled
    assert "no PostHog API key" in caplog.text
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("op", attributes={"user.id": "u"}) as span:
        pass
    assert exporter.export([span]) is SpanExportResult.SUCCESS  # directly: no exception
    stats = exporter.client.stats
    assert stats.attempted == 2 and stats.dropped["disabled"] == 2 and stats.enqueued == 0
    assert exporter.errors == 0
    provider.shutdown()
    assert exporter.export([span]) is SpanExportResult.FAILURE  # after shutdown
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert server.requests == []


attribute_values = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=100), max_size=3),
)


def test_spans_are_built_into_events_on_the_flush_thread(server, make_client, provider):
    seen = []

    def hook(event):
        seen.append(threading.current_thread().name)
        return event

    client = make_client(before_send=hook)
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client)))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"distinct_id": "u1"}):
        pass  # SimpleSpanProcessor exports right here, on the app's thread
    assert client.flush(5)
    assert seen == ["posthog_otel-flush"]
    assert server.event_names() == ["op"]


def test_a_span_that_cannot_be_converted_is_counted(server, make_client):
    class BrokenSpan(ReadableSpan):
        @property
        def status(self):
            raise RuntimeError("broken span")

    client = make_client()
    exporter = PostHogSpanExporter(client)
    span = BrokenSpan(name="op", attributes={"distinct_id": "u1"})
    assert exporter.export([span]) is SpanExportResult.SUCCESS
    assert client.flush(5)
    assert exporter.errors == 1
    assert client.stats.dropped["invalid"] == 1
    assert server.events == []


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(attributes=st.dictionaries(st.text(min_size=1), attribute_values, max_size=6))
@example(attributes={"gen_ai.provider.name": "0"})  # a GenAI span: its $ai_* events
def test_generated_attributes_never_raise(module_server, attributes):
    from posthog_otel import Client

    server = fresh(module_server)
    client = Client(API_KEY, host=server.url)
    exporter = PostHogSpanExporter(client, personless=True)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with provider.get_tracer("t").start_as_current_span("op", attributes=attributes) as s:
            s.set_attribute("posthog.event", "generated")
        assert client.flush(5)
        assert exporter.errors == 0
        # a GenAI span (Hypothesis draws the names it finds in the code) is its $ai_* event
        sent = len(server.events) + client.stats.dropped["invalid"]
        sent += len([e for e in server.ai_events(0, 0) if e["event"] != "$ai_trace"])
        assert sent + client.stats.ai.dropped["invalid"] == 1
    finally:
        provider.shutdown()
        client.close()


def test_zero_code_opentelemetry_instrument(server, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            from opentelemetry import trace
            tracer = trace.get_tracer("zero-code")
            for i in range(3):
                with tracer.start_as_current_span("signup", attributes={"user.id": f"u{i}"}):
                    pass
            """
        )
    )
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "posthog",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "zero-code-app",
        "POSTHOG_API_KEY": API_KEY,
        "POSTHOG_HOST": server.url,
    }
    instrument_cli = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    proc = subprocess.run(
        [instrument_cli, sys.executable, str(app)], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    events = server.events
    assert sorted(e["distinct_id"] for e in events) == ["u0", "u1", "u2"]
    assert {e["properties"]["$service_name"] for e in events} == {"zero-code-app"}
    # Named as the application's traces exporter, it also ships every span to Traces.
    spans = server.wait_for_spans(3, timeout=5)
    assert [s["name"] for s in spans] == ["signup"] * 3
    (request, *_) = server.wait_for_requests(1, path="/i/v1/traces")
    resource = {
        a["key"]: a["value"] for a in request.json["resourceSpans"][0]["resource"]["attributes"]
    }
    assert resource["service.name"] == {"stringValue": "zero-code-app"}


# ------------------------------------------- identity on request spans (issue #10, item 3)


async def _ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _asgi_get(app, headers):
    """One ASGI HTTP request through ``app``, as a server would make it."""
    import asyncio

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/cart",
        "raw_path": b"/cart",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"shop.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))


def _wsgi_get(app, headers):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/cart",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "shop.test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "shop.test",
        "wsgi.url_scheme": "http",
        **headers,
    }
    body = app(environ, lambda status, response_headers, exc_info=None: None)
    b"".join(body)
    getattr(body, "close", lambda: None)()


def _wsgi_ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


IDENTITY_HEADERS = [(b"x-posthog-distinct-id", b"u1"), (b"x-posthog-session-id", b"s1")]
WSGI_IDENTITY = {"HTTP_X_POSTHOG_DISTINCT_ID": "u1", "HTTP_X_POSTHOG_SESSION_ID": "s1"}


@pytest.mark.parametrize("placement", ["middleware inside", "middleware outside"])
def test_asgi_request_span_carries_the_middlewares_identity_in_either_order(
    server, make_client, provider, placement
):
    """FastAPIInstrumentor always runs outside ``add_middleware`` middleware: the
    request span starts before the identity context exists, so the middleware stamps
    it when it runs."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from posthog_otel.middleware import PostHogASGIMiddleware

    client = make_client()
    instrument(provider, client)
    if placement == "middleware inside":
        app = OpenTelemetryMiddleware(PostHogASGIMiddleware(_ok_app), tracer_provider=provider)
    else:
        app = PostHogASGIMiddleware(OpenTelemetryMiddleware(_ok_app, tracer_provider=provider))
    for _ in range(3):
        _asgi_get(app, IDENTITY_HEADERS)
    _asgi_get(app, [])  # no identity: no event
    assert provider.force_flush()
    assert [e["event"] for e in server.events] == ["GET /cart"] * 3  # not send/receive spans
    for event in server.events:
        assert event["distinct_id"] == "u1"
        assert event["properties"]["$session_id"] == "s1"
        assert len(event["properties"]["$trace_id"]) == 32


@pytest.mark.parametrize("placement", ["middleware inside", "middleware outside"])
def test_wsgi_request_span_carries_the_middlewares_identity_in_either_order(
    server, make_client, provider, placement
):
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    from posthog_otel.middleware import PostHogWSGIMiddleware

    client = make_client()
    instrument(provider, client)
    if placement == "middleware inside":
        app = OpenTelemetryMiddleware(PostHogWSGIMiddleware(_wsgi_ok), tracer_provider=provider)
    else:
        app = PostHogWSGIMiddleware(OpenTelemetryMiddleware(_wsgi_ok, tracer_provider=provider))
    for _ in range(3):
        _wsgi_get(app, WSGI_IDENTITY)
    assert provider.force_flush()
    assert [e["distinct_id"] for e in server.events] == ["u1"] * 3
    assert {e["properties"]["$session_id"] for e in server.events} == {"s1"}


def test_middleware_leaves_a_bare_exporters_spans_alone(server, make_client, provider):
    """Without instrument(), only a span's own attributes count, middleware or not."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from posthog_otel.middleware import PostHogASGIMiddleware

    client = make_client()
    elsewhere = TracerProvider()
    instrument(elsewhere, client)  # a stamping processor elsewhere in the process
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client)))
    app = OpenTelemetryMiddleware(PostHogASGIMiddleware(_ok_app), tracer_provider=provider)
    _asgi_get(app, IDENTITY_HEADERS)
    assert client.flush(5)
    assert server.events == []
    elsewhere.shutdown()


def _run_zero_code(server, tmp_path, source, **env):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(source))
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "posthog",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "POSTHOG_API_KEY": API_KEY,
        "POSTHOG_HOST": server.url,
        **env,
    }
    instrument_cli = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    proc = subprocess.run(
        [instrument_cli, sys.executable, str(app)], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_zero_code_spans_get_identity_context_and_baggage(server, tmp_path):
    _run_zero_code(
        server,
        tmp_path,
        """
        from opentelemetry import baggage, trace
        from opentelemetry import context as otel_context
        from posthog_otel import context

        tracer = trace.get_tracer("zero-code")
        with context(distinct_id="ctx-user", session_id="s1"):
            with tracer.start_as_current_span("GET /a", kind=trace.SpanKind.SERVER):
                with tracer.start_as_current_span("SELECT"):
                    pass
        token = otel_context.attach(baggage.set_baggage("posthog.distinct_id", "bag-user"))
        with tracer.start_as_current_span("root"):
            pass
        otel_context.detach(token)
        with tracer.start_as_current_span("nobody"):
            pass
        """,
    )
    events = {e["event"]: e for e in server.events}
    assert sorted(events) == ["GET /a", "root"]
    assert events["GET /a"]["distinct_id"] == "ctx-user"
    assert events["GET /a"]["properties"]["$session_id"] == "s1"
    assert events["root"]["distinct_id"] == "bag-user"


def test_zero_code_exit_flush_exports_the_span_batch_first(server, tmp_path):
    """The client's exit flush (atexit, or a signal handler running it) exports what
    OpenTelemetry's span batch holds, even when the provider never shuts down."""
    _run_zero_code(
        server,
        tmp_path,
        """
        import os
        from opentelemetry import trace
        from posthog_otel import flush_on_exit

        tracer = trace.get_tracer("zero-code")
        for i in range(5):
            with tracer.start_as_current_span("signup", attributes={"user.id": f"u{i}"}):
                pass
        flush_on_exit()
        os._exit(0)  # as a process killed right after its exit flush: no provider shutdown
        """,
        OTEL_BSP_SCHEDULE_DELAY="60000",
    )
    assert sorted(e["distinct_id"] for e in server.events) == [f"u{i}" for i in range(5)]
