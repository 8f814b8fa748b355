"""``PostHogLogExporter``: OpenTelemetry's logs SDK (``LoggerProvider`` +
``BatchLogRecordProcessor``) to PostHog Logs, in process and zero-code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import posthog_otel
from posthog_otel._lifecycle import flush_open_clients
from posthog_otel.otel_logs import PostHogLogExporter, instrument_logs
from tests.conftest import API_KEY

LOGS = "/i/v1/logs"
ROOT = Path(__file__).resolve().parent.parent


def _attributes(record):
    return {kv["key"]: kv["value"] for kv in record.get("attributes", [])}


def test_records_from_a_logger_provider_arrive_with_their_own_values(make_client, server):
    client = make_client(logs=posthog_otel.LogsConfig(service_name="billing"))
    provider = LoggerProvider(resource=Resource.create({"service.name": "ignored-here"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(PostHogLogExporter(client)))
    tracer = TracerProvider().get_tracer("t")
    otel_logger = provider.get_logger("billing.jobs")
    try:
        with tracer.start_as_current_span("job") as span:
            otel_logger.emit(
                body="charged",
                severity_number=SeverityNumber.WARN2,
                severity_text="WARNING",
                attributes={"amount": 12, "posthogDistinctId": "record-user"},
                timestamp=1_700_000_000_123_456_789,
            )
        otel_logger.emit(body={"k": "v"}, severity_number=SeverityNumber.ERROR)
        assert provider.force_flush(5000)
        assert client.flush(5)
        first, second = server.wait_for_log_records(2)
    finally:
        provider.shutdown()
    context = span.get_span_context()
    assert first["body"] == {"stringValue": "charged"}
    assert first["severityNumber"] == 14 and first["severityText"] == "WARNING"
    assert first["timeUnixNano"] == "1700000000123456789"
    assert first["traceId"] == f"{context.trace_id:032x}"
    assert first["spanId"] == f"{context.span_id:016x}"
    assert first["flags"] == int(context.trace_flags)  # as OTel gives them
    attributes = _attributes(first)
    assert attributes["amount"] == {"intValue": "12"}
    assert attributes["posthogDistinctId"] == {"stringValue": "record-user"}
    assert second["severityNumber"] == 17 and second["severityText"] == "ERROR"
    assert "traceId" not in second and "spanId" not in second
    assert second["body"]["kvlistValue"]["values"] == [{"key": "k", "value": {"stringValue": "v"}}]
    (request, *_) = server.wait_for_requests(1, path=LOGS)
    resource = _attributes(request.json["resourceLogs"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "billing"}
    assert client.stats.logs.sent == 2 and client.stats.sent == 0


def test_stdlib_logging_through_the_sdk_handler_carries_the_active_span(make_client, server):
    import logging

    from opentelemetry.sdk._logs import LoggingHandler

    client = make_client()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(PostHogLogExporter(client)))
    handler = LoggingHandler(logger_provider=provider)
    log = logging.getLogger("test_otel_logs.stdlib")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    tracer = TracerProvider().get_tracer("t")
    try:
        # The simple processor exports on the logging thread: the identity context
        # is there, and the record's own attributes win over it.
        with posthog_otel.context(distinct_id="ctx-user", session_id="s-1"):
            with tracer.start_as_current_span("request") as span:
                log.info("hello %s", "world", extra={"order": "o-1"})
            log.info("mine", extra={"posthogDistinctId": "record-user"})
        assert client.flush(5)
        record, mine = server.wait_for_log_records(2)
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    assert record["body"] == {"stringValue": "hello world"}
    assert record["severityNumber"] == 9 and record["severityText"] == "INFO"
    assert record["traceId"] == f"{span.get_span_context().trace_id:032x}"
    attributes = _attributes(record)
    assert attributes["order"] == {"stringValue": "o-1"}
    assert attributes["posthogDistinctId"] == {"stringValue": "ctx-user"}
    assert attributes["sessionId"] == {"stringValue": "s-1"}
    assert _attributes(mine)["posthogDistinctId"] == {"stringValue": "record-user"}


def test_shutdown_delivers_and_closes_only_an_owned_client(make_client, server, monkeypatch):
    client = make_client()
    provider = LoggerProvider()
    exporter = PostHogLogExporter(client)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000)
    )
    provider.get_logger("t").emit(body="at shutdown", severity_number=SeverityNumber.INFO)
    provider.shutdown()  # the processor exports its batch, the exporter flushes the lane
    (record,) = server.wait_for_log_records(1)
    assert record["body"] == {"stringValue": "at shutdown"}
    assert client.capture_log("the passed-in client still works")  # flushed, not closed
    assert exporter.export([]).name == "FAILURE"  # after shutdown

    monkeypatch.setenv("POSTHOG_API_KEY", API_KEY)
    monkeypatch.setenv("POSTHOG_HOST", server.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "owned-svc")
    owned = PostHogLogExporter()
    assert owned.client.capture_log("owned")
    assert owned.force_flush(5000)
    server.wait_for_log_records(2)
    owned.shutdown()
    assert not owned.client.capture_log("after close")  # the owned client is closed
    requests = server.wait_for_requests(2, path=LOGS)
    resource = _attributes(requests[-1].json["resourceLogs"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "owned-svc"}


def test_a_record_that_cannot_be_converted_is_counted_not_raised(make_client):
    exporter = PostHogLogExporter(make_client())
    assert exporter.export([object()]).name == "SUCCESS"
    assert exporter.errors == 1


def _entry_point_path(tmp_path: Path) -> str:
    """A ``sys.path`` entry whose metadata registers this tree's logs exporter entry
    point exactly as pyproject.toml declares it (the shared venv may hold an older
    install of the package)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    group = declared["opentelemetry_logs_exporter"]
    dist = tmp_path / "site" / "posthog_otel_logs_entry-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: posthog-otel-logs-entry\nVersion: 0\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in group.items())
    (dist / "entry_points.txt").write_text(f"[opentelemetry_logs_exporter]\n{lines}")
    return str(tmp_path / "site")


def test_zero_code_otel_logs_exporter_posthog(server, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import logging
            import posthog_otel
            log = logging.getLogger("zero-code")
            with posthog_otel.context(distinct_id="zc-user"):
                for i in range(3):
                    log.warning("disk %d low", i, extra={"disk": i})
            """
        )
    )
    pythonpath = [str(ROOT), _entry_point_path(tmp_path), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),
        "OTEL_LOGS_EXPORTER": "posthog",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_SERVICE_NAME": "zero-code-logs",
        "POSTHOG_API_KEY": API_KEY,
        "POSTHOG_HOST": server.url,
    }
    instrument_cli = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    proc = subprocess.run(
        [instrument_cli, sys.executable, str(app)], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    records = server.wait_for_log_records(3, timeout=5)
    assert [r["body"]["stringValue"] for r in records] == ["disk 0 low", "disk 1 low", "disk 2 low"]
    # 13 as OTel's handler gives it; the text is its own or, when it left none, ours.
    assert {r["severityNumber"] for r in records} == {13}
    assert {r["severityText"] for r in records} <= {"WARN", "WARNING"}
    assert [_attributes(r)["disk"] for r in records] == [{"intValue": str(i)} for i in range(3)]
    # The batch processor exports on its own thread: the identity was stamped when logged.
    assert {_attributes(r)["posthogDistinctId"]["stringValue"] for r in records} == {"zc-user"}
    (request, *_) = server.wait_for_requests(1, path=LOGS)
    resource = _attributes(request.json["resourceLogs"][0]["resource"])
    assert resource["service.name"] == {"stringValue": "zero-code-logs"}
    assert not server.events  # logs only: nothing became an analytics event


def test_readme_opentelemetry_logs_snippet_sends_as_written(make_client, server):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### From OpenTelemetry's logs SDK") :]
    snippet = section[section.index("```python\n") + 10 : section.index("```\n", 10)]
    client = make_client()
    scope: dict[str, object] = {"client": client}
    exec(snippet, scope)
    provider = scope["provider"]
    assert isinstance(provider, LoggerProvider)
    provider.get_logger("readme").emit(body="from the SDK", severity_number=SeverityNumber.INFO)
    provider.shutdown()
    (record,) = server.wait_for_log_records(1)
    assert record["body"] == {"stringValue": "from the SDK"}


def test_instrument_logs_stamps_the_identity_context_under_the_batch_processor(make_client, server):
    client = make_client()
    provider = LoggerProvider()
    instrument_logs(provider, client, schedule_delay_millis=60_000)
    otel_logger = provider.get_logger("t")
    try:
        with posthog_otel.context(distinct_id="ctx-user", session_id="s-9"):
            otel_logger.emit(body="stamped", severity_number=SeverityNumber.INFO)
            otel_logger.emit(
                body="own",
                severity_number=SeverityNumber.INFO,
                attributes={"posthogDistinctId": "record-user"},
            )
        otel_logger.emit(body="outside", severity_number=SeverityNumber.INFO)
        assert provider.force_flush(5000)
        assert client.flush(5)
        stamped, own, outside = map(_attributes, server.wait_for_log_records(3))
    finally:
        provider.shutdown()
    assert stamped == {
        "posthogDistinctId": {"stringValue": "ctx-user"},
        "sessionId": {"stringValue": "s-9"},
    }
    assert own["posthogDistinctId"] == {"stringValue": "record-user"}
    assert own["sessionId"] == {"stringValue": "s-9"}
    assert outside == {}


def test_a_record_without_a_body_is_sent_with_its_event_name_or_a_placeholder(make_client, server):
    """OpenTelemetry's body is optional (an event record carries only a name and
    attributes); ``capture_log`` requires one (LOG-04 drops a blank body). The exporter
    sends such a record with its ``event_name`` as the body, else ``(no body)``: never
    dropped as invalid. A record whose body is an empty string is the application's own
    blank body, dropped as ``capture_log`` drops it."""
    client = make_client()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(PostHogLogExporter(client)))
    otel_logger = provider.get_logger("billing")
    try:
        otel_logger.emit(attributes={"order": 7}, event_name="order.paid")
        otel_logger.emit(attributes={"order": 8}, severity_number=SeverityNumber.WARN)
        otel_logger.emit(body="   ", attributes={"order": 9})
        assert client.flush(5)
        named, unnamed = server.wait_for_log_records(2)
    finally:
        provider.shutdown()
    assert named["body"] == {"stringValue": "order.paid"}
    assert _attributes(named)["event.name"] == {"stringValue": "order.paid"}
    assert _attributes(named)["order"] == {"intValue": "7"}
    assert unnamed["body"] == {"stringValue": "(no body)"}
    assert unnamed["severityNumber"] == 13 and _attributes(unnamed)["order"] == {"intValue": "8"}
    logs = client.stats.logs
    assert logs.sent == 2 and logs.dropped["invalid"] == 1


def test_provider_force_flush_delivers_through_instrument_logs(make_client, server):
    """``provider.force_flush()`` (what a serverless handler calls before it returns)
    delivers the records to PostHog, not only to the logs lane's queue: the batch
    processor alone never calls the exporter's ``force_flush``."""
    client = make_client(flush_interval=3600)
    provider = LoggerProvider()
    instrument_logs(provider, client, schedule_delay_millis=60_000)
    provider.get_logger("t").emit(body="handled", severity_number=SeverityNumber.INFO)
    assert provider.force_flush(10_000)
    assert [record["body"] for record in server.log_records()] == [{"stringValue": "handled"}]
    provider.shutdown()


def test_records_batched_by_instrument_logs_are_delivered_by_the_exit_flush(make_client, server):
    """The exit flush of open clients (at exit, or an ASGI lifespan shutdown: this path)
    first has the batch processor hand over what it holds, whether or not the provider
    ever shuts down."""
    client = make_client(flush_interval=3600)
    provider = LoggerProvider()
    instrument_logs(provider, client, schedule_delay_millis=60_000)
    provider.get_logger("t").emit(body="held", severity_number=SeverityNumber.INFO)
    assert flush_open_clients()
    assert [record["body"] for record in server.log_records()] == [{"stringValue": "held"}]
    provider.shutdown()
