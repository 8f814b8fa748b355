"""The sink (``_sink``) counting OTLP, for the traces and logs benchmarks.

For OTLP/JSON (ours) it counts the ``"spanId":`` / ``"observedTimeUnixNano":`` keys of
spans and log records; for OTLP/protobuf (OpenTelemetry's exporters) it decodes the
request and counts its spans and records, in the sink's process.
"""

from __future__ import annotations

from _sink import Sink


def count_otlp(path: str, body: bytes, content_type: str) -> int:
    if "json" in content_type:
        key = b'"spanId":' if "traces" in path else b'"observedTimeUnixNano":'
        return body.count(key)
    if "traces" in path:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        traces = ExportTraceServiceRequest.FromString(body)
        return sum(
            len(scope.spans) for resource in traces.resource_spans for scope in resource.scope_spans
        )
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    logs = ExportLogsServiceRequest.FromString(body)
    return sum(
        len(scope.log_records) for resource in logs.resource_logs for scope in resource.scope_logs
    )


class OtlpSink(Sink):
    """``with OtlpSink() as sink``: ``sink.url``, ``sink.count`` (spans or records)."""

    count_items = staticmethod(count_otlp)
    reply = b"{}"
