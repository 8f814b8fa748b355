"""PostHog Traces from OpenTelemetry's tracing SDK (issue #14, item 4):
``PostHogSpanExporter(traces=True)``, ``PostHogTraceExporter``, ``instrument_traces``
and the zero-code entry points, with a real ``TracerProvider`` and its span processors
against the fake server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import tomllib
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceState, set_span_in_context
from opentelemetry.trace.span import NonRecordingSpan, SpanContext, TraceFlags

import posthog_otel
from posthog_otel import TracesConfig
from posthog_otel.otel import PostHogSpanExporter, PostHogSpanProcessor, instrument
from posthog_otel.otel_traces import PostHogTraceExporter, instrument_traces
from tests.conftest import API_KEY
from tests.test_traces import _attributes, _proto

TRACES = "/i/v1/traces"
ROOT = Path(__file__).resolve().parent.parent


def _by_name(spans):
    return {span["name"]: span for span in spans}


def test_span_exporter_with_traces_ships_every_span_and_still_makes_events(make_client, server):
    client = make_client()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(BatchSpanProcessor(PostHogSpanExporter(client, traces=True)))
    tracer = provider.get_tracer("t")
    remote = SpanContext(
        int("0af7651916cd43dd8448eb211c80319c", 16),
        int("b7ad6b7169203331", 16),
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "abc")]),
    )
    try:
        with tracer.start_as_current_span(
            "GET /cart",
            context=set_span_in_context(NonRecordingSpan(remote)),
            kind=SpanKind.SERVER,
            attributes={"user.id": "u1", "http.status": 500},
        ) as root:
            with tracer.start_as_current_span("db", attributes={"rows": 3}) as child:
                child.add_event("query", {"sql": "select 1"})
            root.set_status(Status(StatusCode.ERROR, "boom"))
        assert provider.force_flush(5000)
        assert client.flush(5)
        spans = _by_name(server.wait_for_spans(2))
    finally:
        provider.shutdown()
    root_context, child_context = root.get_span_context(), child.get_span_context()
    assert spans["GET /cart"]["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert spans["GET /cart"]["parentSpanId"] == "b7ad6b7169203331"
    assert spans["GET /cart"]["traceState"] == "vendor=abc"
    assert spans["GET /cart"]["kind"] == 2
    assert spans["GET /cart"]["status"] == {"code": 2, "message": "boom"}
    assert _attributes(spans["GET /cart"])["posthogDistinctId"] == {"stringValue": "u1"}
    db = spans["db"]
    assert db["spanId"] == f"{child_context.span_id:016x}"
    assert db["parentSpanId"] == f"{root_context.span_id:016x}"
    assert db["kind"] == 1 and "status" not in db  # unset
    assert "posthogDistinctId" not in _attributes(db)  # no identity: sent all the same
    assert db["events"][0]["name"] == "query"
    assert db["events"][0]["timeUnixNano"] == str(child.events[0].timestamp)
    assert db["startTimeUnixNano"] == str(child.start_time)
    assert db["endTimeUnixNano"] == str(child.end_time)
    (request, *_) = server.wait_for_requests(1, path=TRACES)
    _proto(request)  # valid OTLP
    resource = _attributes(request.json["resourceSpans"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "shop"}  # the span's resource
    assert server.event_names() == ["GET /cart"]  # today's events: only the identified
    assert client.stats.traces.sent == 2


def test_span_exporter_without_traces_sends_no_span(make_client, server):
    client = make_client()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client)))
    with provider.get_tracer("t").start_as_current_span("x", attributes={"user.id": "u1"}):
        pass
    assert client.flush(5)
    assert server.event_names() == ["x"] and server.spans() == []
    assert client.stats.traces.attempted == 0
    provider.shutdown()


def test_instrument_with_traces_stamps_identity_under_the_batch_processor(make_client, server):
    client = make_client(traces=TracesConfig(service_name="configured"))
    provider = TracerProvider(resource=Resource.create({"service.name": "from-otel"}))
    instrument(provider, client, traces=True, schedule_delay_millis=60_000)
    tracer = provider.get_tracer("t")
    try:
        with posthog_otel.context(distinct_id="ctx-user", session_id="s-1"):
            with (
                tracer.start_as_current_span("request", kind=SpanKind.SERVER),
                tracer.start_as_current_span("inner"),
            ):
                pass
            with tracer.start_as_current_span("own", attributes={"posthogDistinctId": "own"}):
                pass
        with tracer.start_as_current_span("outside"):
            pass
        assert provider.force_flush(5000)
        spans = _by_name(server.wait_for_spans(4))
    finally:
        provider.shutdown()
    for name in ("request", "inner"):
        attributes = _attributes(spans[name])
        assert attributes["posthogDistinctId"] == {"stringValue": "ctx-user"}
        assert attributes["sessionId"] == {"stringValue": "s-1"}
        assert not any(key.startswith("posthog.context") for key in attributes)
    assert _attributes(spans["own"])["posthogDistinctId"] == {"stringValue": "own"}
    assert "posthogDistinctId" not in _attributes(spans["outside"])
    (request, *_) = server.wait_for_requests(1, path=TRACES)
    resource = _attributes(request.json["resourceSpans"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "configured"}  # TracesConfig wins


def test_the_lane_options_apply_to_exported_spans(make_client, server):
    def scrub(span):
        span["attributes"].pop("card", None)
        return None if span["name"] == "healthcheck" else span

    client = make_client(traces=TracesConfig(before_send=scrub, max_attributes=2))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PostHogTraceExporter(client)))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("pay", attributes={"card": "4242", "a": 1, "b": 2, "c": 3}):
        pass
    with tracer.start_as_current_span("healthcheck"):
        pass
    assert client.flush(5)
    (span,) = server.wait_for_spans(1)
    assert list(_attributes(span)) == ["a", "b"] and span["droppedAttributesCount"] == 1
    assert client.stats.traces.dropped["before_send"] == 1
    provider.shutdown()


def test_trace_exporter_sends_spans_only(make_client, server):
    client = make_client()
    provider = TracerProvider()
    exporter = PostHogTraceExporter(client)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    try:
        with provider.get_tracer("t").start_as_current_span(
            "signup", attributes={"user.id": "u1", "posthog.event": "signed_up"}
        ) as span:
            span.record_exception(ValueError("bad"))
        assert provider.force_flush(5000)
        assert exporter.force_flush(5000)  # the traces lane, delivered
        (sent,) = server.spans()
    finally:
        provider.shutdown()
    assert sent["events"][0]["name"] == "exception"
    assert server.events == []  # no analytics event, no $exception event
    assert client.stats.attempted == 0 and client.stats.traces.sent == 1


def test_trace_exporter_export_never_blocks_on_the_network(make_client, server):
    client = make_client()
    exporter = PostHogTraceExporter(client)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    release = server.hold_next(path=TRACES)
    try:
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("first"):
            pass
        client.traces.flush(0)  # the first request is now held by the server
        started = time.monotonic()
        for i in range(50):  # export (on this thread, SimpleSpanProcessor) only queues
            with tracer.start_as_current_span(f"s{i}"):
                pass
        assert time.monotonic() - started < 3.0  # no request was waited for
        assert exporter.force_flush(100) is False  # not delivered within the time given
    finally:
        release.set()
    assert exporter.force_flush(5000)
    assert len(server.spans()) == 51
    provider.shutdown()


def test_trace_exporter_follows_the_span_exporter_contract(make_client, server, monkeypatch):
    client = make_client()
    exporter = PostHogTraceExporter(client)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    with provider.get_tracer("t").start_as_current_span("at shutdown"):
        pass
    provider.shutdown()  # the processor exports its batch; the exporter flushes the lane
    assert [s["name"] for s in server.spans()] == ["at shutdown"]
    assert exporter.export([]) is SpanExportResult.FAILURE  # after shutdown
    exporter.shutdown()  # idempotent
    assert client.capture("still open", "u1")  # a passed-in client is not closed

    monkeypatch.setenv("POSTHOG_API_KEY", API_KEY)
    monkeypatch.setenv("POSTHOG_HOST", server.url)
    owned = PostHogTraceExporter()
    owned_provider = TracerProvider(resource=Resource.create({"service.name": "owned-svc"}))
    owned_provider.add_span_processor(SimpleSpanProcessor(owned))
    with owned_provider.get_tracer("t").start_as_current_span("owned"):
        pass
    assert owned.force_flush(5000)
    owned_provider.shutdown()
    assert owned.client.traces.submit({"trace_id": "1" * 32, "span_id": "1" * 16}) is False
    assert owned.client.stats.traces.dropped["closed"] == 1  # the owned client is closed
    request = server.wait_for_requests(2, path=TRACES)[-1]
    resource = _attributes(request.json["resourceSpans"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "owned-svc"}


def test_a_span_that_cannot_be_converted_is_counted_not_raised(make_client):
    exporter = PostHogTraceExporter(make_client())
    assert exporter.export([object()]) is SpanExportResult.SUCCESS  # type: ignore[list-item]
    assert exporter.errors == 1


def test_instrument_traces_stamps_identity_and_batches(make_client, server):
    client = make_client()
    provider = TracerProvider()
    processor = instrument_traces(provider, client, schedule_delay_millis=60_000)
    assert isinstance(processor, PostHogSpanProcessor)
    with (
        posthog_otel.context(distinct_id="u9"),
        provider.get_tracer("t").start_as_current_span("job"),
    ):
        pass
    provider.shutdown()
    (span,) = server.wait_for_spans(1)
    assert _attributes(span)["posthogDistinctId"] == {"stringValue": "u9"}
    assert server.events == []


def test_provider_force_flush_delivers_through_instrument_traces(make_client, server):
    """``provider.force_flush()`` (what a serverless handler calls before it returns)
    delivers the spans to PostHog, not only to the exporter's queue: the batch
    processor alone does not call the exporter's ``force_flush``."""
    client = make_client(flush_interval=3600)
    provider = TracerProvider()
    instrument_traces(provider, client, schedule_delay_millis=60_000)
    with provider.get_tracer("t").start_as_current_span("handler"):
        pass
    assert provider.force_flush(10_000)
    assert [span["name"] for span in server.spans()] == ["handler"]
    provider.shutdown()


def _entry_point_path(tmp_path: Path) -> str:
    """A ``sys.path`` entry whose metadata registers this tree's traces exporter entry
    points exactly as pyproject.toml declares them (the shared venv may hold an older
    install of the package)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    group = declared["opentelemetry_traces_exporter"]
    assert group["posthog_traces"] == "posthog_otel.otel_traces:PostHogTraceExporter"
    dist = tmp_path / "site" / "posthog_otel_traces_entry-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: posthog-otel-traces-entry\nVersion: 0\n"
    )
    lines = f"posthog_traces = {group['posthog_traces']}\n"
    (dist / "entry_points.txt").write_text(f"[opentelemetry_traces_exporter]\n{lines}")
    return str(tmp_path / "site")


def test_zero_code_otel_traces_exporter_posthog_traces(server, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import posthog_otel
            from opentelemetry import trace
            tracer = trace.get_tracer("zero-code")
            with posthog_otel.context(distinct_id="zc-user"):
                with tracer.start_as_current_span("request"):
                    for i in range(2):
                        with tracer.start_as_current_span(f"step {i}"):
                            pass
            """
        )
    )
    pythonpath = [str(ROOT), _entry_point_path(tmp_path), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),
        "OTEL_TRACES_EXPORTER": "posthog_traces",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "zero-code-traces",
        "POSTHOG_API_KEY": API_KEY,
        "POSTHOG_HOST": server.url,
    }
    instrument_cli = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    proc = subprocess.run(
        [instrument_cli, sys.executable, str(app)], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    spans = _by_name(server.wait_for_spans(3, timeout=5))
    assert set(spans) == {"request", "step 0", "step 1"}
    # The batch processor exports on its own thread: the identity was stamped at start.
    assert {_attributes(span)["posthogDistinctId"]["stringValue"] for span in spans.values()} == {
        "zc-user"
    }
    (request, *_) = server.wait_for_requests(1, path=TRACES)
    resource = _attributes(request.json["resourceSpans"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "zero-code-traces"}
    assert server.events == []  # spans only: nothing became an analytics event


def test_zero_code_posthog_and_posthog_traces_send_each_span_to_traces_once(server, tmp_path):
    """``OTEL_TRACES_EXPORTER=posthog,posthog_traces`` (events from one, PostHog Traces
    from the other): the ``posthog`` exporter leaves the traces lane to the other one,
    so no span is sent twice."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    group = declared["opentelemetry_traces_exporter"]
    dist = tmp_path / "site" / "posthog_otel_both_entries-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: both-entries\nVersion: 0\n")
    lines = "".join(f"{name} = {group[name]}\n" for name in ("posthog", "posthog_traces"))
    (dist / "entry_points.txt").write_text(f"[opentelemetry_traces_exporter]\n{lines}")
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import posthog_otel
            from opentelemetry import trace
            tracer = trace.get_tracer("zero-code")
            with posthog_otel.context(distinct_id="zc-user"):
                for i in range(2):
                    with tracer.start_as_current_span(f"job {i}"):
                        pass
            """
        )
    )
    pythonpath = [str(ROOT), str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),
        "OTEL_TRACES_EXPORTER": "posthog,posthog_traces",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "POSTHOG_API_KEY": API_KEY,
        "POSTHOG_HOST": server.url,
    }
    instrument_cli = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    proc = subprocess.run(
        [instrument_cli, sys.executable, str(app)], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(span["name"] for span in server.spans()) == ["job 0", "job 1"]
    assert sorted(event["event"] for event in server.events) == ["job 0", "job 1"]


def _snippet(heading: str, index: int = 0) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(heading) :]
    return section.split("```python\n")[index + 1].split("```\n")[0]


def test_readme_tracing_sdk_snippet_sends_as_written(make_client, server):
    client = make_client()
    scope: dict[str, object] = {"client": client}
    exec(_snippet("### From OpenTelemetry's tracing SDK"), scope)
    provider = scope["provider"]
    assert isinstance(provider, TracerProvider)
    with provider.get_tracer("readme").start_as_current_span("from the SDK"):
        pass
    provider.shutdown()
    (span,) = server.wait_for_spans(1)
    assert span["name"] == "from the SDK"


def test_readme_traces_config_snippet_scrubs_as_written(server):
    code = _snippet("### The traces lane").replace('"phc_..."', f"{API_KEY!r}, host=host")
    scope: dict[str, object] = {"host": server.url}
    exec(code, scope)
    client = scope["client"]
    assert isinstance(client, posthog_otel.Client)
    try:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(PostHogTraceExporter(client)))
        tracer = provider.get_tracer("readme")
        secret = {"http.request.header.authorization": "Bearer x", "k": 1}
        for name in ("GET /health", "GET /cart"):
            with tracer.start_as_current_span(name, attributes=secret):
                pass
        assert client.flush(5)
        (span,) = server.wait_for_spans(1)
        assert span["name"] == "GET /cart" and list(_attributes(span)) == ["k"]
    finally:
        client.close(2)
