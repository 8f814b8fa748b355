"""GenAI spans → LLM analytics (issue #15, item 3): spans made by a real OpenTelemetry
``TracerProvider`` with the attributes the GenAI semantic conventions (and the older
OpenLLMetry forms) define, exported by ``PostHogSpanExporter``, checked event by event
against the fake server's AI route."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from posthog_otel import PostHogSpanExporter, context
from posthog_otel.otel import instrument

T0 = 1_790_000_000_000_000_000  # ns
MS = 1_000_000

SYSTEM = {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]}
USER = {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}
ANSWER = {
    "role": "assistant",
    "parts": [{"type": "text", "content": "Sunny, 21°C."}],
    "finish_reason": "stop",
}
PNG = "iVBORw0KGgo" + "A" * 400  # base64 long enough to be media


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({"service.name": "assistant"}))
    yield provider
    provider.shutdown()


def _tracer(provider: TracerProvider, client: Any, **options: Any) -> Tracer:
    provider.add_span_processor(SimpleSpanProcessor(PostHogSpanExporter(client, **options)))
    return provider.get_tracer("opentelemetry.instrumentation.fake_openai")


def _ids(span: Any) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _chat(tracer: Tracer, start: int = T0, **extra: Any) -> Any:
    """A chat completion as an instrumentation following the current conventions
    records it (opt-in content capture: the messages as JSON attributes)."""
    span = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, start_time=start)
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 200,
            "gen_ai.response.id": "chatcmpl-1",
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.usage.cache_read.input_tokens": 4,
            "gen_ai.usage.cache_creation.input_tokens": 0,
            "gen_ai.input.messages": json.dumps([SYSTEM, USER]),
            "gen_ai.output.messages": json.dumps([ANSWER]),
            "server.address": "api.openai.com",
            "server.port": 443,
            **extra,
        }
    )
    span.end(end_time=start + 1500 * MS)
    return span


def _ai(server: Any, client: Any, count: int) -> list[dict[str, Any]]:
    assert client.flush(5) is True
    events = server.ai_events(count)
    assert len(events) == count, [e["event"] for e in events]
    return events


def test_chat_span_with_token_usage(server, make_client, provider):
    client = make_client()
    span = _chat(_tracer(provider, client), **{"user.id": "u-1", "session.id": "s-1"})
    trace_id, span_id = _ids(span)
    generation, trace = _ai(server, client, 2)
    assert generation["event"] == "$ai_generation"
    assert generation["distinct_id"] == "u-1"
    assert datetime.fromisoformat(generation["timestamp"]).timestamp() == T0 / 1e9
    props = generation["properties"]
    expected = {
        "$ai_trace_id": trace_id,
        "$ai_span_id": span_id,
        "$ai_span_name": "chat gpt-4o",
        "$ai_latency": 1.5,
        "$ai_provider": "openai",
        "$ai_model": "gpt-4o",  # the requested model, as the official SDK
        "gen_ai.response.model": "gpt-4o-2024-08-06",  # the one that answered
        "$ai_input_tokens": 12,
        "$ai_output_tokens": 5,
        "$ai_cache_read_input_tokens": 4,
        "$ai_model_parameters": {"temperature": 0.2, "max_tokens": 200},
        "$ai_stop_reason": "stop",
        "$ai_response_id": "chatcmpl-1",
        "$ai_input": [SYSTEM, USER],
        "$ai_output_choices": [ANSWER],
        "gen_ai.operation.name": "chat",
        "server.address": "api.openai.com",
        "server.port": 443,
        "$session_id": "s-1",
        "$service_name": "assistant",
    }
    assert {k: props.get(k) for k in expected} == expected
    for absent in (
        "$ai_parent_id",  # a root
        "$ai_cache_creation_input_tokens",  # reported as 0: only counts above zero
        "$ai_is_error",
        "$process_person_profile",
        "gen_ai.input.messages",  # mapped: not repeated under its own name
        "gen_ai.usage.input_tokens",
        "user.id",  # identity, not a property
    ):
        assert absent not in props, absent
    assert props["$lib"] == "posthog-otel"
    # the root of its trace: the trace's one $ai_trace
    assert trace["event"] == "$ai_trace" and trace["distinct_id"] == "u-1"
    assert trace["properties"]["$ai_trace_id"] == trace_id
    assert trace["properties"]["$ai_trace_name"] == "chat gpt-4o"
    assert trace["properties"]["$ai_latency"] == 1.5
    assert trace["properties"]["$ai_input_state"] == [SYSTEM, USER]
    assert trace["properties"]["$ai_output_state"] == [ANSWER]
    assert "$ai_span_id" not in trace["properties"]  # not a node of the tree
    # instead of an analytics event, not beside one
    assert server.events == [] and client.stats.attempted == 0
    assert client.stats.ai.sent == 2


def test_cache_tokens_are_declared_part_of_the_input_tokens(server, make_client, provider):
    """The GenAI conventions count cached tokens inside ``gen_ai.usage.input_tokens``
    (OpenLLMetry too: ``test_older_attribute_forms``): ``$ai_cache_reporting_exclusive:
    false`` says so, or PostHog's cost backend infers exclusive counts from a Claude
    model's name and charges the cached tokens twice. Without cache counts it is left
    to ingestion."""
    client = make_client()
    tracer = _tracer(provider, client)
    _chat(tracer, **{"gen_ai.request.model": "claude-sonnet-4", "user.id": "u"})
    _chat(
        tracer,
        **{
            "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.usage.cache_creation.input_tokens": 9,
            "user.id": "u",
        },
    )
    _chat(tracer, **{"gen_ai.usage.cache_read.input_tokens": 0, "user.id": "u"})
    events = _ai(server, client, 6)
    cached, created, none = (e["properties"] for e in events if e["event"] != "$ai_trace")
    assert cached["$ai_cache_reporting_exclusive"] is False
    assert created["$ai_cache_reporting_exclusive"] is False
    assert "$ai_cache_reporting_exclusive" not in none


def test_streaming_chat_span_content_from_events(server, make_client, provider):
    """A streamed completion: the instrumentation records the messages as span events
    (``gen_ai.user.message``, one ``gen_ai.choice`` when the stream ends) and the usage
    reported in the last chunk."""
    client = make_client()
    tracer = _tracer(provider, client)
    span = tracer.start_span("chat claude-sonnet", kind=SpanKind.CLIENT, start_time=T0)
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.request.stream": True,
        }
    )
    span.add_event("gen_ai.system.message", {"content": "Be brief."}, timestamp=T0)
    span.add_event("gen_ai.user.message", {"content": "Hi!"}, timestamp=T0)
    span.add_event(
        "gen_ai.choice",
        {
            "index": 0,
            "finish_reason": "end_turn",
            "message": json.dumps({"role": "assistant", "content": "Hello."}),
        },
        timestamp=T0 + 900 * MS,
    )
    span.set_attributes(
        {
            "gen_ai.response.finish_reasons": ("end_turn",),
            "gen_ai.usage.input_tokens": 9,
            "gen_ai.usage.output_tokens": 3,
            "gen_ai.usage.cache_creation.input_tokens": 30,
        }
    )
    span.end(end_time=T0 + 950 * MS)
    generation, _trace = _ai(server, client, 2)
    props = generation["properties"]
    assert generation["event"] == "$ai_generation"
    assert props["$ai_input"] == [
        {"content": "Be brief.", "role": "system"},
        {"content": "Hi!", "role": "user"},
    ]
    assert props["$ai_output_choices"] == [
        {
            "index": 0,
            "finish_reason": "end_turn",
            "message": {"role": "assistant", "content": "Hello."},
        }
    ]
    assert props["$ai_latency"] == 0.95
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"]) == (9, 3)
    assert props["$ai_cache_creation_input_tokens"] == 30
    assert props["$ai_stop_reason"] == "end_turn"
    assert props["gen_ai.request.stream"] is True  # unknown: under its own name


def test_embedding_span(server, make_client, provider):
    client = make_client()
    tracer = _tracer(provider, client)
    span = tracer.start_span("embeddings text-embedding-3-small", start_time=T0)
    span.set_attributes(
        {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 8,
            "gen_ai.embeddings.dimension.count": 1536,
            "gen_ai.request.encoding_formats": ("float",),
            "posthog.distinct_id": "u-2",
        }
    )
    span.end(end_time=T0 + 80 * MS)
    embedding, trace = _ai(server, client, 2)
    assert embedding["event"] == "$ai_embedding" and embedding["distinct_id"] == "u-2"
    props = embedding["properties"]
    assert props["$ai_model"] == "text-embedding-3-small"
    assert props["$ai_provider"] == "openai"
    assert props["$ai_input_tokens"] == 8 and "$ai_output_tokens" not in props
    assert props["$ai_latency"] == 0.08
    assert props["gen_ai.embeddings.dimension.count"] == 1536
    assert props["gen_ai.request.encoding_formats"] == ["float"]
    assert "$ai_input" not in props and "$ai_output_choices" not in props  # none recorded
    assert trace["event"] == "$ai_trace"


def test_tool_call_span(server, make_client, provider):
    client = make_client()
    tracer = _tracer(provider, client)
    with tracer.start_as_current_span("invoke_agent Weather", start_time=T0) as agent:
        agent.set_attributes(
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Weather"}
        )
        tool = tracer.start_span("execute_tool get_weather", kind=SpanKind.INTERNAL, start_time=T0)
        tool.set_attributes(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": '{"temperature": 21}',
            }
        )
        tool.end(end_time=T0 + 20 * MS)
    trace_id, agent_id = _ids(agent)
    step, _agent, _trace = _ai(server, client, 3)
    assert step["event"] == "$ai_span"
    props = step["properties"]
    assert props["$ai_span_type"] == "tool"
    assert props["$ai_span_name"] == "get_weather"
    assert props["$ai_trace_id"] == trace_id and props["$ai_parent_id"] == agent_id
    assert props["$ai_span_id"] == _ids(tool)[1]
    assert props["$ai_input_state"] == {"city": "Paris"}
    assert props["$ai_output_state"] == {"temperature": 21}
    assert props["$ai_latency"] == 0.02
    assert props["gen_ai.tool.call.id"] == "call_1" and props["gen_ai.tool.type"] == "function"
    assert "gen_ai.tool.call.arguments" not in props
    assert "$ai_model" not in props and "$ai_input_tokens" not in props


def test_failed_call_with_an_http_error(server, make_client, provider):
    """The call fails with HTTP 429: status ERROR, ``error.type``, the exception
    recorded on the span; the ``$exception`` event still goes to error tracking."""
    client = make_client()
    tracer = _tracer(provider, client)
    span = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, start_time=T0)
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "error.type": "openai.RateLimitError",
            "http.response.status_code": 429,
            "user.id": "u-3",
        }
    )
    try:
        raise RuntimeError("Rate limit reached for gpt-4o")
    except RuntimeError as exc:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=T0 + 300 * MS)
    generation, trace = _ai(server, client, 2)
    props = generation["properties"]
    assert props["$ai_http_status"] == 429
    assert props["$ai_is_error"] is True
    assert props["$ai_error"] == "Rate limit reached for gpt-4o"
    assert props["$ai_error_type"] == "openai.RateLimitError"
    assert "$ai_output_choices" not in props and "$ai_input_tokens" not in props
    assert trace["properties"]["$ai_is_error"] is True
    (exception,) = server.wait_for_events(1)
    assert exception["event"] == "$exception" and exception["distinct_id"] == "u-3"


def test_http_status_from_error_type_only(server, make_client, provider):
    """The conventions' ``error.type`` for an HTTP failure is the status code."""
    client = make_client()
    tracer = _tracer(provider, client)
    _chat(tracer, **{"error.type": "503"})
    generation, _ = _ai(server, client, 2)
    assert generation["properties"]["$ai_http_status"] == 503
    assert generation["properties"]["$ai_is_error"] is True
    assert generation["properties"]["$ai_error"] == "503"


def test_nested_agent_trace(server, make_client, provider):
    """agent → chat → tool → chat: one event per span in the order they end, with the
    tree in ``$ai_parent_id``, and one ``$ai_trace`` when the root ends."""
    client = make_client()
    tracer = _tracer(provider, client)
    with tracer.start_as_current_span("invoke_agent Weather", start_time=T0) as agent:
        agent.set_attributes(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "Weather",
                "gen_ai.provider.name": "openai",
                "gen_ai.conversation.id": "conv-7",
                "gen_ai.input.messages": json.dumps([USER]),
            }
        )
        first = _chat(tracer, start=T0 + 10 * MS)
        tool = tracer.start_span("execute_tool get_weather", start_time=T0 + 1600 * MS)
        tool.set_attributes(
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}
        )
        tool.end(end_time=T0 + 1700 * MS)
        second = _chat(tracer, start=T0 + 1800 * MS)
        agent.set_attribute("gen_ai.output.messages", json.dumps([ANSWER]))
    trace_id, agent_id = _ids(agent)
    events = _ai(server, client, 5)
    assert [e["event"] for e in events] == [
        "$ai_generation",
        "$ai_span",
        "$ai_generation",
        "$ai_span",
        "$ai_trace",
    ]
    chat1, step, chat2, root, trace = (e["properties"] for e in events)
    assert {p["$ai_trace_id"] for p in (chat1, step, chat2, root, trace)} == {trace_id}
    assert (chat1["$ai_span_id"], step["$ai_span_id"], chat2["$ai_span_id"]) == (
        _ids(first)[1],
        _ids(tool)[1],
        _ids(second)[1],
    )
    assert chat1["$ai_parent_id"] == step["$ai_parent_id"] == chat2["$ai_parent_id"] == agent_id
    assert root["$ai_span_id"] == agent_id and "$ai_parent_id" not in root
    assert root["$ai_span_type"] == "agent" and root["$ai_span_name"] == "Weather"
    assert root["$ai_input_state"] == [USER] and root["$ai_output_state"] == [ANSWER]
    assert root["$ai_session_id"] == "conv-7"
    assert trace["$ai_trace_name"] == "Weather" and trace["$ai_session_id"] == "conv-7"
    assert trace["$ai_input_state"] == [USER] and trace["$ai_output_state"] == [ANSWER]
    # nobody is known: personless, every event of the trace under the trace id
    assert {e["distinct_id"] for e in events} == {trace_id}
    assert all(p["$process_person_profile"] is False for p in (chat1, step, chat2, root, trace))
    assert [datetime.fromisoformat(e["timestamp"]).timestamp() for e in events] == [
        (T0 + 10 * MS) / 1e9,
        (T0 + 1600 * MS) / 1e9,
        (T0 + 1800 * MS) / 1e9,
        T0 / 1e9,
        T0 / 1e9,
    ]


def test_a_non_genai_root_keeps_its_analytics_event_and_adds_the_trace(
    server, make_client, provider
):
    """A request span (with identity) around an LLM call: the request stays an analytics
    event, the call becomes ``$ai_generation``, and the request's end sends the trace's
    ``$ai_trace`` under the request's identity. A trace without GenAI spans sends none."""
    client = make_client()
    tracer = _tracer(provider, client)
    with tracer.start_as_current_span(
        "POST /ask", kind=SpanKind.SERVER, attributes={"user.id": "u-9"}
    ) as request:
        _chat(tracer)
    with tracer.start_as_current_span("GET /health", attributes={"user.id": "u-9"}):
        pass
    generation, trace = _ai(server, client, 2)
    assert generation["event"] == "$ai_generation"
    assert generation["distinct_id"] == generation["properties"]["$ai_trace_id"]  # its own: none
    assert trace["event"] == "$ai_trace" and trace["distinct_id"] == "u-9"
    assert trace["properties"]["$ai_trace_name"] == "POST /ask"
    assert trace["properties"]["$ai_trace_id"] == _ids(request)[0]
    assert "$process_person_profile" not in trace["properties"]
    assert [e["event"] for e in server.wait_for_events(2)] == ["POST /ask", "GET /health"]


def test_identity_from_instrument_context(server, make_client, provider):
    """Through ``instrument()``, a GenAI span started inside an identity context carries
    that identity, child span or not."""
    client = make_client()
    instrument(provider, client)
    tracer = provider.get_tracer("t")
    with context(distinct_id="u-ctx", session_id="s-ctx"), tracer.start_as_current_span("w"):
        _chat(tracer)
    provider.force_flush()
    generation, trace = _ai(server, client, 2)
    assert generation["distinct_id"] == trace["distinct_id"] == "u-ctx"
    assert generation["properties"]["$session_id"] == "s-ctx"
    assert "$process_person_profile" not in generation["properties"]
    assert "posthog.context_distinct_id" not in generation["properties"]


def test_privacy_mode_drops_prompt_and_completion_content(server, make_client, provider):
    client = make_client()
    tracer = _tracer(provider, client, privacy_mode=True, enable_full_ai_capture=True)
    with tracer.start_as_current_span("invoke_agent Helper") as agent:
        agent.set_attributes(
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.input.messages": json.dumps([USER])}
        )
        span = tracer.start_span("chat gpt-4o")
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 3,
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "x"}]),
                "gen_ai.input.messages": json.dumps([USER]),
                "gen_ai.output.messages": json.dumps([ANSWER]),
                "gen_ai.prompt.0.content": "old-style prompt",
                "gen_ai.retrieval.query.text": "secret query",
                "error.type": "ValueError",
            }
        )
        span.add_event("gen_ai.user.message", {"content": "from an event"})
        try:
            raise ValueError("the prompt was: secret")
        except ValueError as exc:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, "the prompt was: secret"))
        span.end()
        tool = tracer.start_span("execute_tool t")
        tool.set_attributes(
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.call.arguments": '{"q": 1}'}
        )
        tool.end()
    events = _ai(server, client, 4)
    text = json.dumps(events)
    for content in ("Weather in Paris", "Sunny", "old-style", "secret", "from an event", '"q"'):
        assert content not in text, content
    for props in (e["properties"] for e in events):
        for name in ("$ai_input", "$ai_output_choices", "$ai_instructions"):
            assert name not in props
        assert "$ai_input_state" not in props and "$ai_output_state" not in props
    generation = events[0]["properties"]
    assert generation["$ai_model"] == "gpt-4o" and generation["$ai_input_tokens"] == 3
    assert generation["$ai_is_error"] is True and generation["$ai_error"] == "ValueError"
    client.flush(5)
    assert server.events == []  # the exception event would echo the prompt


def test_base64_media_placeholders_unless_full_capture(server, make_client, provider):
    """CAI-07: a ``data:`` URL and a base64 blob part become typed placeholders; with
    ``enable_full_ai_capture=True`` they pass unchanged."""
    image_url = f"data:image/png;base64,{PNG}"
    message = {
        "role": "user",
        "parts": [
            {"type": "text", "content": "What is in this picture?"},
            {"type": "uri", "modality": "image", "uri": image_url},
            {"type": "blob", "modality": "audio", "mime_type": "audio/wav", "content": PNG},
        ],
    }
    openai_style = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}
    redacted = {
        "role": "user",
        "parts": [
            {"type": "text", "content": "What is in this picture?"},
            {"type": "uri", "modality": "image", "uri": "[base64 image redacted]"},
            {
                "type": "blob",
                "modality": "audio",
                "mime_type": "audio/wav",
                "content": "[base64 audio redacted]",
            },
        ],
    }
    for full, expected, expected_openai in (
        (
            False,
            redacted,
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "[base64 image redacted]"}}],
            },
        ),
        (True, message, openai_style),
    ):
        server.reset()
        client = make_client()
        tracer = _tracer(provider, client, enable_full_ai_capture=full)
        _chat(tracer, **{"gen_ai.input.messages": json.dumps([message, openai_style])})
        generation, _ = _ai(server, client, 2)
        assert generation["properties"]["$ai_input"] == [expected, expected_openai], full
        client.close(5)


@pytest.mark.parametrize("full", [False, True])
def test_base64_media_in_attributes_passed_through(server, make_client, provider, full):
    """CAI-07 holds for an unmapped attribute too: OpenInference flattens an image part
    into ``llm.input_messages.N.message.contents.M.message_content.image.image.url``."""
    client = make_client()
    key = "llm.input_messages.0.message.contents.1.message_content.image.image.url"
    image_url = f"data:image/jpeg;base64,{PNG}"
    tracer = _tracer(provider, client, enable_full_ai_capture=full)
    _chat(tracer, **{key: image_url, "llm.images": (image_url, "https://x/y.png")})
    generation, _ = _ai(server, client, 2)
    props = generation["properties"]
    placeholder = "[base64 image redacted]"
    assert props[key] == (image_url if full else placeholder)
    assert props["llm.images"] == [image_url if full else placeholder, "https://x/y.png"]


def test_short_or_textual_strings_are_not_media(server, make_client, provider):
    """CAI-08: content passes through as recorded; only base64 media is replaced."""
    client = make_client()
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "data is fine"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        ],
    }
    _chat(_tracer(provider, client), **{"gen_ai.input.messages": json.dumps([message])})
    generation, _ = _ai(server, client, 2)
    assert generation["properties"]["$ai_input"] == [message]


def test_older_attribute_forms(server, make_client, provider):
    """OpenLLMetry's pre-1.30 forms: ``gen_ai.system``, ``llm.request.type``,
    ``prompt_tokens``/``completion_tokens``, indexed ``gen_ai.prompt.N.*`` and
    ``gen_ai.completion.N.*`` (tool calls nested), OpenLLMetry cache counters,
    ``llm.request.functions.N.*`` tool definitions."""
    client = make_client()
    tracer = _tracer(provider, client)
    span = tracer.start_span("openai.chat", start_time=T0)
    span.set_attributes(
        {
            "gen_ai.system": "OpenAI",
            "llm.request.type": "chat",
            "llm.is_streaming": False,
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 20,
            "gen_ai.usage.completion_tokens": 7,
            "llm.usage.total_tokens": 27,
            "gen_ai.usage.cache_read_input_tokens": 16,
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "Be brief.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": json.dumps(
                [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
                ]
            ),
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.finish_reason": "tool_calls",
            "gen_ai.completion.0.tool_calls.0.id": "call_1",
            "gen_ai.completion.0.tool_calls.0.name": "get_weather",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
            "llm.request.functions.0.name": "get_weather",
            "llm.request.functions.0.description": "Weather by city",
        }
    )
    span.end(end_time=T0 + 2 * 10**9)
    generation, _ = _ai(server, client, 2)
    props = generation["properties"]
    assert generation["event"] == "$ai_generation"
    assert props["$ai_provider"] == "OpenAI" and props["$ai_model"] == "gpt-4o-mini"
    assert (props["$ai_input_tokens"], props["$ai_output_tokens"]) == (20, 7)
    assert props["$ai_total_tokens"] == 27 and props["$ai_cache_read_input_tokens"] == 16
    assert props["$ai_cache_reporting_exclusive"] is False  # 16 of the 20 prompt tokens
    assert props["$ai_input"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "[base64 image redacted]"}},
            ],
        },
    ]
    assert props["$ai_output_choices"] == [
        {
            "role": "assistant",
            "finish_reason": "tool_calls",
            "tool_calls": [
                {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
            ],
        }
    ]
    assert props["$ai_tools"] == [{"name": "get_weather", "description": "Weather by city"}]
    assert props["$ai_latency"] == 2.0
    assert props["llm.is_streaming"] is False and props["llm.request.type"] == "chat"
    assert not any(k.startswith(("gen_ai.prompt", "gen_ai.completion")) for k in props)


def test_older_whole_prompt_events_and_attributes(server, make_client, provider):
    """``gen_ai.content.prompt``/``gen_ai.content.completion`` events, and a
    ``gen_ai.prompt`` JSON attribute on an OpenLLMetry workflow step."""
    client = make_client()
    tracer = _tracer(provider, client)
    span = tracer.start_span("chat")
    span.set_attributes({"gen_ai.system": "openai", "gen_ai.operation.name": "chat"})
    span.add_event(
        "gen_ai.content.prompt", {"gen_ai.prompt": json.dumps([{"role": "user", "content": "Q"}])}
    )
    span.add_event(
        "gen_ai.content.completion",
        {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "A"}])},
    )
    span.end()
    step = tracer.start_span("plan.task")
    step.set_attributes(
        {
            "traceloop.span.kind": "task",
            "traceloop.entity.name": "plan",
            "traceloop.entity.input": json.dumps({"args": ["trip"]}),
            "traceloop.entity.output": '"done"',
        }
    )
    step.end()
    generation, _, task, _ = _ai(server, client, 4)
    assert generation["properties"]["$ai_input"] == [{"role": "user", "content": "Q"}]
    assert generation["properties"]["$ai_output_choices"] == [{"role": "assistant", "content": "A"}]
    assert task["event"] == "$ai_span"
    assert task["properties"]["$ai_span_type"] == "task"
    assert task["properties"]["$ai_span_name"] == "plan"
    assert task["properties"]["$ai_input_state"] == {"args": ["trip"]}
    assert task["properties"]["$ai_output_state"] == '"done"'


def test_unknown_attributes_pass_through(server, make_client, provider):
    client = make_client()
    _chat(
        _tracer(provider, client),
        **{
            "app.feature": "search",
            "gen_ai.openai.request.service_tier": "auto",
            "tags": ("a", "b"),
        },
    )
    generation, _ = _ai(server, client, 2)
    props = generation["properties"]
    assert props["app.feature"] == "search"
    assert props["gen_ai.openai.request.service_tier"] == "auto"
    assert props["tags"] == ["a", "b"]


def test_non_genai_span_is_still_an_analytics_event(server, make_client, provider):
    client = make_client()
    tracer = _tracer(provider, client)
    with tracer.start_as_current_span("checkout", attributes={"posthog.distinct_id": "u-5"}):
        pass
    client.flush(5)
    (event,) = server.wait_for_events(1)
    assert event["event"] == "checkout" and event["distinct_id"] == "u-5"
    assert server.ai_events() == [] and client.stats.ai.enqueued == 0


def test_personless_events(server, make_client, provider):
    client = make_client()
    span = _chat(_tracer(provider, client))
    trace_id, _ = _ids(span)
    generation, trace = _ai(server, client, 2)
    for event in (generation, trace):
        assert event["distinct_id"] == trace_id
        assert event["properties"]["$process_person_profile"] is False


def test_exporter_options_are_checked():
    """A misused option raises a ValueError that names it."""
    with pytest.raises(ValueError, match=r"privacy_mode=\.\.\.\) must be True or False"):
        PostHogSpanExporter(privacy_mode="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="enable_full_ai_capture"):
        PostHogSpanExporter(None, enable_full_ai_capture=1)  # type: ignore[arg-type]


def test_readme_snippet_sends_as_written(server, make_client):
    """README, "LLM analytics": the GenAI span example runs as written."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### From OpenTelemetry GenAI spans") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    client = make_client()
    exec(match.group(1), {"client": client})
    generation, trace = server.ai_events(2)
    assert generation["event"] == "$ai_generation" and generation["distinct_id"] == "user-123"
    props = generation["properties"]
    assert props["$ai_model"] == "gpt-4o-mini" and props["$ai_input_tokens"] == 12
    assert props["$ai_output_choices"][0]["parts"][0]["content"] == "Hello!"
    assert trace["event"] == "$ai_trace" and trace["distinct_id"] == "user-123"


def test_a_genai_span_ending_after_its_root_adds_no_trace(server, make_client, provider):
    """The ``$ai_trace`` is sent when the local root ends: a GenAI span left running
    after its (non-GenAI) root still sends its own event, and no late ``$ai_trace``."""
    client = make_client()
    tracer = _tracer(provider, client)
    with tracer.start_as_current_span("POST /ask"):
        late = tracer.start_span("chat gpt-4o")
        late.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"})
    late.end()
    (generation,) = _ai(server, client, 1)
    assert generation["event"] == "$ai_generation"


def test_content_nested_beyond_reason_does_not_lose_the_span(server, make_client, provider):
    """JSON too deeply nested to parse stays text; the event still arrives."""
    client = make_client()
    deep = "[" * 100_000 + "]" * 100_000
    _chat(_tracer(provider, client), **{"gen_ai.input.messages": deep})
    generation, _ = _ai(server, client, 2)
    assert generation["properties"]["$ai_input"] == deep
    assert generation["properties"]["$ai_model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("attributes", "event", "span_type"),
    [
        ({"gen_ai.operation.name": "text_completion"}, "$ai_generation", None),
        ({"gen_ai.operation.name": "generate_content"}, "$ai_generation", None),
        ({"gen_ai.operation.name": "create_agent"}, "$ai_span", "agent"),
        ({"gen_ai.operation.name": "invoke_workflow"}, "$ai_span", "workflow"),
        ({"gen_ai.operation.name": "retrieval"}, "$ai_span", "retrieval"),
        ({"llm.request.type": "embedding", "gen_ai.system": "cohere"}, "$ai_embedding", None),
        ({"llm.request.type": "rerank", "gen_ai.system": "cohere"}, "$ai_span", "rerank"),
        ({"traceloop.span.kind": "workflow"}, "$ai_span", "workflow"),
        ({"gen_ai.system": "openai"}, "$ai_generation", None),  # no operation: a call
        ({"gen_ai.request.model": "gpt-4o"}, "$ai_generation", None),
    ],
)
def test_operations_and_their_events(server, make_client, provider, attributes, event, span_type):
    client = make_client()
    with _tracer(provider, client).start_as_current_span("op", attributes=attributes):
        pass
    first, trace = _ai(server, client, 2)
    assert (first["event"], first["properties"].get("$ai_span_type")) == (event, span_type)
    assert trace["event"] == "$ai_trace"


@pytest.mark.parametrize(
    "odd",
    [
        {"gen_ai.response.finish_reasons": ()},
        {"gen_ai.response.finish_reasons": "length"},
        {"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "many"},
        {"gen_ai.usage.input_tokens": True, "gen_ai.usage.output_tokens": 2.0},
        {"gen_ai.input.messages": "not json [", "gen_ai.output.messages": "7"},
        {"gen_ai.input.messages": "{", "gen_ai.prompt.x.content": "a", "gen_ai.prompt.1": "b"},
        {"gen_ai.prompt.0.content": "x", "gen_ai.prompt.0.content.0.type": "text"},
        {"gen_ai.tool.definitions": "[{]", "error.type": "٣"},
        {"gen_ai.request.stop_sequences": ("\n",), "gen_ai.request.temperature": "hot"},
        # digits int() refuses: beyond its 4300-digit limit, or not decimal ("²")
        {"gen_ai.usage.input_tokens": "9" * 5000, "http.response.status_code": "1" * 5000},
        {"gen_ai.usage.output_tokens": 1e300, "gen_ai.usage.total_tokens": "9" * 40},
        {"gen_ai.prompt.².content": "a", "gen_ai.prompt.0.tool_calls.².name": "b"},
        {"gen_ai.prompt." + "7" * 5000 + ".content": "a"},
    ],
)
def test_odd_values_never_lose_the_span(server, make_client, provider, odd):
    """Values no instrumentation should record still give an event: mapped when they
    can be, as recorded otherwise."""
    client = make_client()
    exporter = PostHogSpanExporter(client)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat", **odd}):
        pass
    generation, _ = _ai(server, client, 2)
    assert generation["event"] == "$ai_generation" and exporter.errors == 0
    props = generation["properties"]
    if odd.get("gen_ai.usage.input_tokens") == "12":
        assert props["$ai_input_tokens"] == 12 and "$ai_output_tokens" not in props
    if odd.get("gen_ai.usage.input_tokens") is True:
        assert "$ai_input_tokens" not in props and props["$ai_output_tokens"] == 2
    if odd.get("gen_ai.input.messages") == "not json [":
        assert props["$ai_input"] == "not json [" and props["$ai_output_choices"] == "7"
    if odd.get("gen_ai.usage.output_tokens") == 1e300 or "http.response.status_code" in odd:
        assert not {"$ai_input_tokens", "$ai_output_tokens", "$ai_total_tokens"} & set(props)
        assert "$ai_http_status" not in props


def test_a_genai_span_also_goes_to_the_traces_lane(server, make_client, provider):
    """Issue #15: a GenAI span becomes its ``$ai_*`` event instead of an analytics event,
    and still goes to PostHog Traces when that is switched on (``traces=True``)."""
    client = make_client()
    span = _chat(_tracer(provider, client, traces=True), **{"user.id": "u-1"})
    trace_id, span_id = _ids(span)
    generation, _trace = _ai(server, client, 2)
    assert generation["event"] == "$ai_generation"
    (sent,) = server.spans()
    assert (sent["traceId"], sent["spanId"]) == (trace_id, span_id)
    assert server.events == []


def test_instrument_passes_the_ai_options_on(server, make_client, provider):
    """``instrument(provider, client, privacy_mode=True)`` as the exporter's option."""
    client = make_client()
    processor = instrument(provider, client, privacy_mode=True)
    _chat(provider.get_tracer("fake_openai"), **{"user.id": "u-1"})
    processor.force_flush()
    generation, _trace = _ai(server, client, 2)
    assert "$ai_input" not in generation["properties"]
    assert "$ai_output_choices" not in generation["properties"]
    assert generation["properties"]["$ai_model"] == "gpt-4o"
