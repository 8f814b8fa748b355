"""OpenTelemetry: spans that carry a distinct id become PostHog events.

Attach to the application's provider::

    posthog_otel.otel.instrument(provider, client)     # exporter + identity stamping

or, with only a span's own attributes counting::

    provider.add_span_processor(BatchSpanProcessor(PostHogSpanExporter(client)))

``BatchSpanProcessor.force_flush`` does not call the exporter's ``force_flush``; on the
bare-exporter path call ``client.flush()`` yourself. Through ``instrument(...)`` a
provider ``force_flush`` really delivers.

``PostHogSpanExporter(client, traces=True)`` also sends *every* finished span, with or
without a distinct id, to PostHog Traces (``/i/v1/traces``, the client's traces lane:
``client.traces``); ``otel_traces.PostHogTraceExporter`` sends spans there only.

Zero-code: the entry point ``opentelemetry_traces_exporter = posthog`` lets
``OTEL_TRACES_EXPORTER=posthog OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
opentelemetry-instrument python app.py`` (with ``opentelemetry-distro``) export spans with
a client configured from ``POSTHOG_API_KEY``/``POSTHOG_HOST``. On that path (and only
there) the exporter also adds the identity stamping of ``instrument()`` to the global
provider, so spans get the identity context and baggage as with ``instrument()``, and
sends every span to PostHog Traces too (the application named it its traces exporter),
unless ``posthog_traces`` is named as well (that exporter sends them there).

The request middleware also puts the request's identity on the request (SERVER) span
that is current when it runs, once a stamping processor exists: an instrumentation that
runs outside the middleware (``FastAPIInstrumentor`` always does) starts that span
before the identity context is set.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from ._context import _current
from ._exc_snapshot import Boundary, ExcEntry, entries_bytes
from ._exc_text import parse_traceback, split_type
from ._fork import fork_safe_lock
from ._genai_export import GenAiSpans
from ._genai_privacy import is_ai_span, redacted, redacted_record
from ._integration import PERSONLESS, first_id, flush_provider_at_exit, release_client
from ._log import logger
from ._snapshot import ENTRY_BYTES, EVENT_BYTES
from .messages import Capture

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "IDENTITY_KEYS",
    "PostHogSpanExporter",
    "PostHogSpanProcessor",
    "instrument",
    "span_capture",
    "span_exception_entries",
    "span_record",
    "stamp_identity",
]

SPAN_EXCEPTION = Boundary(level="error", mechanism="generic", source="opentelemetry.span_exporter")
"""A span's recorded exception: handled or not is unknown (omitted, EEM-03)."""

IDENTITY_KEYS = ("posthog.distinct_id", "posthogDistinctId", "distinct_id", "user.id", "enduser.id")
SESSION_KEYS = ("session.id", "$session_id", "sessionId")
EVENT_KEY = "posthog.event"
CONTEXT_DISTINCT_ID = "posthog.context_distinct_id"
CONTEXT_SESSION_ID = "posthog.context_session_id"
BAGGAGE_DISTINCT_ID = "posthog.distinct_id"
_NOT_PROPERTIES = frozenset(
    (*IDENTITY_KEYS, EVENT_KEY, CONTEXT_DISTINCT_ID, CONTEXT_SESSION_ID, *SESSION_KEYS)
)


class PostHogSpanExporter(SpanExporter):
    """Turns finished spans into ``Capture`` events on the client's queue.

    A span becomes an event when its attributes carry a distinct id (``IDENTITY_KEYS``,
    in that order) or ``posthog.event``, or when it is a root or SERVER span stamped
    with context identity by ``instrument()``; child spans inherit nothing by default,
    so a request does not turn into one event per database call. ``export`` returns at
    once: it queues the finished spans, and the client's flush thread builds the events
    and does the I/O.

    With ``client=None`` the exporter builds and owns a client configured from the
    environment (zero-code use); ``shutdown()`` closes that client, and only flushes a
    client you passed in. Built with ``client=None`` while ``OTEL_TRACES_EXPORTER``
    names ``posthog`` (the zero-code entry point), it also stamps identity on the
    global provider's spans and joins the client's exit flush (see ``_join_zero_code``).

    Error tracking: each ``exception`` event of a span (``record_exception``, and the
    SDK's recording of an exception escaping a span) becomes an ``$exception`` event
    with the span's trace and span ids and its identity (personless without one), its
    frames parsed from ``exception.stacktrace`` (none: an entry without frames, never
    a stack of the exporter's thread); ``exceptions=False`` turns that off.

    PostHog Traces: with ``traces=True`` (always on the zero-code path) every finished
    span, identified or not, also goes to the client's traces lane (``span_record``:
    ``posthogDistinctId``/``sessionId`` from the span's distinct-id attribute or the
    stamped identity context), whatever ``Client(traces=...)`` says.

    LLM analytics: a span that follows the OpenTelemetry GenAI conventions becomes its
    ``$ai_generation``/``$ai_embedding``/``$ai_span`` (and its trace one ``$ai_trace``)
    through ``client.capture_ai`` instead of an analytics event (``_genai_export``,
    README "LLM analytics"). ``privacy_mode=True`` (``None``: ``POSTHOG_PRIVACY_MODE``,
    the zero-code path's switch) leaves out prompts, completions and
    tool content from everything sent of an AI span (``_genai_privacy``: its ``$ai_*``,
    analytics and traces-lane forms; no ``$exception`` events, whose messages echo
    them); ``enable_full_ai_capture=True`` keeps base64 media instead of placeholders.
    """

    _entry_point = "posthog"  # the name under opentelemetry_traces_exporter
    _events = True  # spans become analytics events (and $exception events)

    def __init__(
        self,
        client: Client | None = None,
        *,
        personless: bool = False,
        exceptions: bool = True,
        traces: bool = False,
        privacy_mode: bool | None = None,
        enable_full_ai_capture: bool = False,
    ) -> None:
        self._genai = GenAiSpans(  # first: a misused option raises before a client exists
            privacy_mode=privacy_mode,
            enable_full_ai_capture=enable_full_ai_capture,
            identity_keys=(*IDENTITY_KEYS, CONTEXT_DISTINCT_ID),
            session_keys=(*SESSION_KEYS, CONTEXT_SESSION_ID),
            hidden=_NOT_PROPERTIES,
        )
        zero_code = False
        if client is None:
            from .client import Client

            zero_code = _named_by_otel_environment(self._entry_point)
            # Outside zero-code, no exit hook of its own: the provider's shutdown (at
            # exit) closes it after the last spans were exported.
            client = Client(_exit_hook=zero_code)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.personless = personless
        self.exceptions = exceptions
        # Zero-code, every span also goes to PostHog Traces, unless the application
        # named ``posthog_traces`` as well: that exporter sends them there (once).
        self.traces = bool(traces) or (
            zero_code and not (self._events and _named_by_otel_environment("posthog_traces"))
        )
        """Whether every span also goes to PostHog Traces (the client's traces lane)."""
        self._shutdown = False
        self._lock = fork_safe_lock()
        self._provider: weakref.ref[TracerProvider] | None = None
        # One bound method for every queued item, not a new one per item: one object
        # fewer for each queued event to allocate and for the garbage collector to walk.
        self._builder = self._build
        self._ai_builder = self._build_ai
        self._exception_builder = self._build_exception
        self.errors = 0
        """Spans that could not be converted because of an internal error."""
        if zero_code:
            self._join_zero_code()

    def _join_zero_code(self) -> None:
        """On the entry-point path: stamp identity on the global provider's spans (the
        configurator set that provider just before building this exporter), and have
        the client's exit flush (atexit, signal handlers) export OpenTelemetry's span
        batch first, whether or not the provider is shut down later."""
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            return  # no SDK provider is global: there is nothing to stamp
        self._provider = weakref.ref(provider)
        stamp_identity(provider)
        self.client.pipeline.add_producer(self._flush_batch)

    def _flush_batch(self) -> None:
        """Export what the span processor wrapping this exporter holds (at exit)."""
        if not self._shutdown:
            flush_provider_at_exit(self.client, self._provider)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        lane = self.client.traces if self.traces else None
        for span in spans:
            try:
                if lane is not None:
                    if span.resource is not None:
                        lane.use_resource(span.resource.attributes)
                    record = span_record(span)
                    if is_ai_span(span.name, span.attributes or {}):
                        record = redacted_record(record, private=self._genai.privacy_mode)
                    lane.submit(record)
                if self._events:
                    self._export_span(span)
            except Exception:
                with self._lock:
                    self.errors += 1
                logger.debug("could not convert a span", exc_info=True)
        return SpanExportResult.SUCCESS

    def _export_span(self, span: ReadableSpan) -> None:
        attributes: Mapping[str, Any] = span.attributes or {}
        genai = self._genai.export(self.client, span, attributes)  # its $ai_* event instead
        ai = is_ai_span(span.name, attributes)
        if self.exceptions and span.events and not (ai and self._genai.privacy_mode):
            # (in privacy mode, an AI span's exception messages may echo its content)
            self._export_exceptions(span, attributes)
        if genai:
            return
        distinct_id = first_id(attributes, IDENTITY_KEYS)
        event = attributes.get(EVENT_KEY)
        if distinct_id is None:
            stamped = first_id(attributes, (CONTEXT_DISTINCT_ID,))
            entry = span.parent is None or span.parent.is_remote or span.kind is SpanKind.SERVER
            if stamped is not None and (entry or event is not None):
                distinct_id = stamped
            elif event is None or not self.personless:
                return
        # A finished span does not change: the event is built from it on the flush
        # thread, so that export (on the app's thread, under SimpleSpanProcessor) costs a
        # tuple and an append.
        nbytes = EVENT_BYTES + ENTRY_BYTES * (len(attributes) + 6)  # attributes, span ids
        builder = self._ai_builder if ai else self._builder
        self.client.pipeline.defer((builder, span, distinct_id, event), nbytes)

    def _export_exceptions(self, span: ReadableSpan, attributes: Mapping[str, Any]) -> None:
        """Queue the span's ``exception`` events as ``$exception`` events."""
        distinct_id = first_id(attributes, IDENTITY_KEYS) or first_id(
            attributes, (CONTEXT_DISTINCT_ID,)
        )
        intake = self.client.exceptions
        for event in span.events:
            if event.name != "exception":
                continue
            entries = span_exception_entries(event.attributes or {})
            taken = intake.take_entries(None, entries, distinct_id, None)
            if taken is not None:
                item = (self._exception_builder, span, distinct_id, event.timestamp, *taken)
                self.client.pipeline.defer(item, EVENT_BYTES + entries_bytes(taken[0]))

    def _build_exception(
        self,
        span: ReadableSpan,
        distinct_id: str | None,
        timestamp: int,
        entries: list[ExcEntry],
        suppressed: int,
    ) -> dict[str, Any] | None:
        """A span's recorded exception as an ``$exception`` event; flush thread."""
        properties: dict[str, Any] = {"$span_name": span.name}
        span_context = span.context
        if span_context is not None:
            properties["$trace_id"] = f"{span_context.trace_id:032x}"
            properties["$span_id"] = f"{span_context.span_id:016x}"
        session = first_id(span.attributes or {}, (*SESSION_KEYS, CONTEXT_SESSION_ID))
        if session is not None:
            properties["$session_id"] = session
        service = span.resource.attributes.get("service.name") if span.resource else None
        if service is not None:
            properties["$service_name"] = service
        return self.client.exceptions.event(
            entries,
            suppressed,
            SPAN_EXCEPTION,
            distinct_id,
            properties,
            None if distinct_id is not None else PERSONLESS,
            timestamp / 1e9,
        )

    def _build(self, span: ReadableSpan, distinct_id: Any, event: Any) -> dict[str, Any] | None:
        """The event for ``span``; runs on the flush thread."""
        try:
            return self.client.pipeline.finish(
                span_capture(span, distinct_id, event),
                None if distinct_id is not None else PERSONLESS,
            )
        except Exception:
            with self._lock:
                self.errors += 1
            raise  # the exporter counts it as an invalid drop

    def _build_ai(self, span: ReadableSpan, distinct_id: Any, event: Any) -> dict[str, Any] | None:
        """The event for an AI span that is no GenAI span: its properties as they may be
        sent (``_genai_privacy.redacted``: MCP credentials, content in privacy mode)."""
        built = self._build(span, distinct_id, event)
        if built is not None:
            properties = built.get("properties") or {}
            built["properties"] = redacted(properties, private=self._genai.privacy_mode)
        return built

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what the client has queued."""
        return self.client.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Flush; close the client only if this exporter created it."""
        if self._shutdown:
            return
        self._shutdown = True
        release_client(self.client, self._owns_client)


def span_capture(span: ReadableSpan, distinct_id: Any, event: Any) -> Capture:
    """The capture for a finished span (a pure function): its attributes but the
    identity keys, the trace, span and parent ids, duration, status, service name and
    session; named ``event`` when given, else after the span."""
    attributes: Mapping[str, Any] = span.attributes or {}
    properties: dict[str, Any] = {
        key: value for key, value in attributes.items() if key not in _NOT_PROPERTIES
    }
    span_context = span.context
    if span_context is not None:
        properties["$trace_id"] = f"{span_context.trace_id:032x}"
        properties["$span_id"] = f"{span_context.span_id:016x}"
    if span.parent is not None:
        properties["$parent_span_id"] = f"{span.parent.span_id:016x}"
    if span.start_time is not None and span.end_time is not None:
        properties["$duration_ms"] = (span.end_time - span.start_time) / 1e6
    properties["$span_status"] = span.status.status_code.name
    service = span.resource.attributes.get("service.name") if span.resource else None
    if service is not None:
        properties["$service_name"] = service
    session = first_id(attributes, (*SESSION_KEYS, CONTEXT_SESSION_ID))
    if session is not None:
        properties["$session_id"] = session
    ended = span.end_time
    timestamp = datetime.fromtimestamp(ended / 1e9, timezone.utc) if ended is not None else None
    name = event if isinstance(event, str) and event else span.name
    return Capture(name, distinct_id, properties, timestamp=timestamp)


def span_exception_entries(attributes: Mapping[str, Any]) -> list[ExcEntry]:
    """The exception of a span's ``exception`` event (a pure function): the entries of
    its ``exception.stacktrace`` text, else one entry from ``exception.type`` and
    ``exception.message`` without frames."""
    stacktrace = attributes.get("exception.stacktrace")
    entries = parse_traceback(stacktrace) if isinstance(stacktrace, str) else []
    if entries:
        return entries
    name, module = split_type(str(attributes.get("exception.type") or "Exception"))
    message = attributes.get("exception.message")
    return [
        ExcEntry(name, "" if message is None else str(message), module, None, 0, None, None, False)
    ]


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished OpenTelemetry span as the plain span of the traces lane (a pure
    function; ``TraceCapture.submit`` takes it): hex ids, kind and status by name,
    events, the SDK's dropped counts, and the attributes with ``posthogDistinctId``/
    ``sessionId`` from the span's own distinct-id and session attributes, else the
    identity context stamped when it started (TRC-14; the span's own
    ``posthogDistinctId``/``sessionId`` win). The stamping keys are not sent."""
    # One copy into a dict: OpenTelemetry's attribute mapping answers each missing key
    # (most identity keys miss) through a raised KeyError.
    attributes = dict(span.attributes) if span.attributes else {}
    record_attributes: dict[str, Any] = {}
    distinct_id = first_id(attributes, IDENTITY_KEYS) or first_id(
        attributes, (CONTEXT_DISTINCT_ID,)
    )
    if distinct_id is not None:
        record_attributes["posthogDistinctId"] = distinct_id
    session = first_id(attributes, (*SESSION_KEYS, CONTEXT_SESSION_ID))
    if session is not None:
        record_attributes["sessionId"] = session
    for key, value in attributes.items():
        if key not in (CONTEXT_DISTINCT_ID, CONTEXT_SESSION_ID):
            record_attributes[key] = value
    context = span.context
    code = span.status.status_code
    return {
        "trace_id": f"{context.trace_id:032x}" if context is not None else None,
        "span_id": f"{context.span_id:016x}" if context is not None else None,
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "trace_state": context.trace_state.to_header() if context is not None else None,
        "flags": int(context.trace_flags) if context is not None else None,
        "name": span.name,
        "kind": span.kind.name.lower(),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": record_attributes,
        "events": [
            {
                "name": event.name,
                "time_ns": event.timestamp,
                "attributes": dict(event.attributes or {}),
            }
            for event in span.events
        ],
        "status": None if code is StatusCode.UNSET else code.name.lower(),
        "status_message": span.status.description,
        "dropped_attributes_count": span.dropped_attributes,
        "dropped_events_count": span.dropped_events,
    }


def stamp_identity(provider: TracerProvider) -> None:
    """Have ``provider`` stamp the identity context (else baggage
    ``posthog.distinct_id``) on each span as it starts, once per provider: what lets a
    span exported later, on the batch processor's thread, carry the identity of the
    request that made it (``instrument()``, the zero-code path and
    ``otel_traces.instrument_traces`` do this)."""
    if provider not in _stamped_providers:
        _stamped_providers.add(provider)
        provider.add_span_processor(_IdentityProcessor())


def _named_by_otel_environment(entry_point: str) -> bool:
    """Whether ``OTEL_TRACES_EXPORTER`` (also set by ``opentelemetry-instrument
    --traces_exporter``) names ``entry_point``: the zero-code entry-point path."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "")
    return entry_point in (name.strip() for name in names.split(","))


# The request (SERVER) spans started under a stamping processor: the only spans the
# middleware stamps (a bare exporter's spans keep counting only their own attributes).
_request_spans: weakref.WeakSet[Span] = weakref.WeakSet()
_stamped_providers: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


def _stamp_identity(span: Span, parent_context: Context | None) -> None:
    """Stamp the identity context (else baggage ``posthog.distinct_id``) on ``span``."""
    if span.kind is SpanKind.SERVER:
        _request_spans.add(span)
    ctx = _current.get()
    distinct_id = ctx.distinct_id if ctx is not None else None
    if not distinct_id:
        value = baggage.get_baggage(BAGGAGE_DISTINCT_ID, parent_context)
        distinct_id = str(value) if value else None
    if distinct_id:
        span.set_attribute(CONTEXT_DISTINCT_ID, distinct_id)
    if ctx is not None and ctx.session_id:
        span.set_attribute(CONTEXT_SESSION_ID, ctx.session_id)


def stamp_request_span() -> None:
    """Called by the request middleware inside its identity context: put that identity
    on the current request (SERVER) span, which an instrumentation running outside
    the middleware started before the context existed. Whichever runs first, the
    span ends up with the request's identity."""
    ctx = _current.get()
    if not _request_spans or ctx is None or not (ctx.distinct_id or ctx.session_id):
        return
    span = trace.get_current_span()
    if span not in _request_spans or not span.is_recording():
        return
    if ctx.distinct_id:
        span.set_attribute(CONTEXT_DISTINCT_ID, ctx.distinct_id)
    if ctx.session_id:
        span.set_attribute(CONTEXT_SESSION_ID, ctx.session_id)


class _IdentityProcessor(SpanProcessor):
    """Only the stamping of ``PostHogSpanProcessor`` (the zero-code path, where the
    configurator already wrapped the exporter in its own ``BatchSpanProcessor``)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        _stamp_identity(span, parent_context)


class PostHogSpanProcessor(SpanProcessor):
    """Stamps identity on spans as they start and exports them through a
    ``BatchSpanProcessor`` of ``PostHogSpanExporter``; ``force_flush`` also flushes the
    client, so ``provider.force_flush()`` really delivers."""

    def __init__(self, exporter: PostHogSpanExporter, **batch_options: Any) -> None:
        self.exporter = exporter
        self._batch = BatchSpanProcessor(exporter, **batch_options)
        # At exit, the client's hook exports what the batch holds before its last flush,
        # whether or not the provider shuts down (and whenever its hook runs).
        exporter.client.pipeline.add_producer(self._batch.force_flush)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        _stamp_identity(span, parent_context)
        self._batch.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._batch.on_end(span)

    def shutdown(self) -> None:
        self._batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        drained = self._batch.force_flush(timeout_millis)
        return self.exporter.client.flush(timeout_millis / 1000) and drained


def instrument(
    provider: TracerProvider,
    client: Client | None = None,
    *,
    personless: bool = False,
    exceptions: bool = True,
    traces: bool = False,
    privacy_mode: bool | None = None,
    enable_full_ai_capture: bool = False,
    **batch_options: Any,
) -> PostHogSpanProcessor:
    """Attach PostHog to ``provider``: spans started inside an identity context (or
    under baggage ``posthog.distinct_id``) carry that id, and root/SERVER spans with an
    identity become events; ``traces=True`` also sends every span to PostHog Traces;
    ``privacy_mode``/``enable_full_ai_capture`` as for ``PostHogSpanExporter``.
    ``batch_options`` go to the ``BatchSpanProcessor``."""
    if client is None:
        from .client import default_client

        client = default_client()
    processor = PostHogSpanProcessor(
        PostHogSpanExporter(
            client,
            personless=personless,
            exceptions=exceptions,
            traces=traces,
            privacy_mode=privacy_mode,
            enable_full_ai_capture=enable_full_ai_capture,
        ),
        **batch_options,
    )
    provider.add_span_processor(processor)
    return processor
