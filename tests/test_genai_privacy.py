"""privacy_mode holds for everything the exporter sends (review of issue #15): the
``$ai_*`` events, the analytics and ``$exception`` events and the traces lane carry no
prompt, completion, tool or error text, whatever attribute, event or status an
instrumentation put it in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from posthog_otel import PostHogSpanExporter
from posthog_otel.otel_traces import PostHogTraceExporter, instrument_traces

SECRET = "s3cr3t-prompt"
# Attributes the instrumentations in use record content in (the official SDK's list of
# content attributes, OpenInference, OpenLLMetry, Vercel AI, Pydantic AI, Langfuse).
CONTENT_ATTRIBUTES = (
    "gen_ai.prompt.0.content",
    "gen_ai.completion.0.content",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.task.input",
    "gen_ai.task.output",
    "gen_ai.guardrail.input",
    "gen_ai.guardrail.error.message",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "llm.prompts.0.content",
    "llm.choices.0.content",
    "llm.input_messages.0.message.content",
    "llm.function_call",
    "llm.prompt_template.template",
    "llm.prompt_template.variables",
    "llm.invocation_parameters",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "traceloop.prompt.template_variables.city",
    "input.value",
    "output.value",
    "retrieval.documents.0.document.content",
    "embedding.embeddings.0.embedding.text",
    "ai.prompt",
    "ai.prompt.messages",
    "ai.response.text",
    "ai.toolCall.args",
    "pydantic_ai.all_messages",
    "langfuse.observation.input",
    "mcp.response.value",
    "error.message",
)


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


def _leaky_span(provider: TracerProvider, operation: str | None) -> None:
    tracer = provider.get_tracer("fake_instrumentation")
    span = tracer.start_span("llm call")
    attributes: dict[str, Any] = {key: f"{SECRET} in {key}" for key in CONTENT_ATTRIBUTES}
    attributes["user.id"] = "u-1"
    attributes["gen_ai.request.model"] = "gpt-4o"
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    else:  # an AI span no convention classifies: OpenInference's own kind
        del attributes["gen_ai.request.model"]
        attributes["openinference.span.kind"] = "LLM"
        attributes["$event_name"] = "llm step"
    span.set_attributes(attributes)
    span.add_event("gen_ai.user.message", {"content": f"{SECRET} in an event"})
    span.add_event("log", {"message": f"{SECRET} in a framework log"})
    try:
        raise ValueError(f"{SECRET} in an exception")
    except ValueError as exc:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{SECRET} in the status"))
    span.end()


@pytest.mark.parametrize("operation", ["chat", "execute_tool", None])
def test_privacy_mode_leaks_no_content_anywhere(server, make_client, provider, operation):
    client = make_client()
    exporter = PostHogSpanExporter(client, traces=True, privacy_mode=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _leaky_span(provider, operation)
    assert client.flush(5) is True
    sent = {
        "ai": server.ai_events(2 if operation else 0, timeout=2 if operation else 0.2),
        "events": server.events,
        "spans": server.spans(),
    }
    assert sent["spans"], "the span still reaches the traces lane"
    text = json.dumps(sent)
    assert SECRET not in text, [
        line for line in json.dumps(sent, indent=1).splitlines() if SECRET in line
    ]
    (span,) = sent["spans"]
    keys = {attribute["key"] for attribute in span["attributes"]}
    assert "posthogDistinctId" in keys  # what is not content stays
    if operation is None:
        assert "gen_ai.request.model" not in keys and "openinference.span.kind" in keys
    else:
        assert "gen_ai.request.model" in keys


MCP_TOOL = {
    "type": "mcp",
    "server_label": "crm",
    "server_url": "https://mcp.example.com",
    "headers": {"Authorization": "Bearer sk-mcp-secret"},
}
VERCEL_MCP_TOOL = {
    "type": "provider-defined",
    "id": "openai.mcp",
    "args": {"serverUrl": "https://mcp.example.com", "authorization": "sk-mcp-secret"},
}
FUNCTION_TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


@pytest.mark.parametrize("privacy_mode", [False, True])
def test_mcp_credentials_in_tool_definitions_are_masked(
    server, make_client, provider, privacy_mode
):
    """A remote MCP server's tool definition carries its credentials: masked in
    ``$ai_tools``, in tool definitions passed through and in PostHog Traces, as the
    official SDK does on every export."""
    client = make_client()
    exporter = PostHogSpanExporter(client, traces=True, privacy_mode=privacy_mode)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("fake").start_span("chat gpt-4o")
    span.set_attributes(
        {
            "user.id": "u-1",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.tool.definitions": json.dumps([MCP_TOOL, FUNCTION_TOOL]),
            "ai.prompt.tools": (json.dumps(VERCEL_MCP_TOOL), json.dumps(FUNCTION_TOOL)),
            "llm.tools.0.tool.json_schema": json.dumps(MCP_TOOL),
        }
    )
    span.end()
    assert client.flush(5) is True
    generation, _trace = server.ai_events(2)
    (sent,) = server.spans()
    assert "sk-mcp-secret" not in json.dumps([generation, sent])
    masked = {**MCP_TOOL, "headers": "[REDACTED]"}
    props = generation["properties"]
    assert props["$ai_tools"] == [masked, FUNCTION_TOOL]
    assert json.loads(props["llm.tools.0.tool.json_schema"]) == masked
    vercel = json.loads(props["ai.prompt.tools"][0])
    assert vercel["args"] == {"serverUrl": "https://mcp.example.com", "authorization": "[REDACTED]"}
    assert json.loads(props["ai.prompt.tools"][1]) == FUNCTION_TOOL


@pytest.mark.parametrize("attach", ["exporter", "instrument_traces"])
def test_the_traces_only_exporter_has_privacy_mode_too(server, make_client, provider, attach):
    """``PostHogTraceExporter``/``instrument_traces`` send AI spans to PostHog Traces
    only: ``privacy_mode=True`` strips them there as well."""
    client = make_client()
    if attach == "exporter":
        exporter = PostHogTraceExporter(client, privacy_mode=True)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        instrument_traces(provider, client, privacy_mode=True)
    _leaky_span(provider, "chat")
    assert provider.force_flush() and client.flush(5) is True
    (span,) = server.spans()
    assert SECRET not in json.dumps(span)
    assert "gen_ai.request.model" in {attribute["key"] for attribute in span["attributes"]}
    assert server.events == []


@pytest.mark.parametrize(
    ("env", "given", "private"),
    [("1", None, True), ("true", None, True), ("off", None, False), ("1", False, False)],
)
def test_posthog_privacy_mode_env_switches_the_exporters(
    server, make_client, provider, monkeypatch, env, given, private
):
    """The zero-code exporters take no arguments: ``POSTHOG_PRIVACY_MODE`` is their
    switch (an explicit ``privacy_mode`` wins)."""
    monkeypatch.setenv("POSTHOG_PRIVACY_MODE", env)
    client = make_client()
    options = {} if given is None else {"privacy_mode": given}
    exporter = PostHogSpanExporter(client, traces=True, **options)
    assert PostHogTraceExporter(client, **options)._genai.privacy_mode is private
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _leaky_span(provider, "chat")
    assert client.flush(5) is True
    sent = json.dumps([server.ai_events(2), server.spans()])
    assert (SECRET not in sent) is private
