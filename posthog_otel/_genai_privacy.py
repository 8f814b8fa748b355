"""What ``privacy_mode`` removes from an AI span, wherever the span goes: the
``$ai_*`` events, the analytics and ``$exception`` events and the traces lane.

Instrumentations record content under many names (the GenAI conventions, OpenLLMetry,
OpenInference, the Vercel AI SDK, Pydantic AI, Langfuse...), and every attribute we do
not map travels under its own name: so content is recognised by name here, the same
list the official SDK's ``posthog.ai.otel`` drops from spans in privacy mode. An AI
span (``is_ai_span``, the official SDK's test: a name or attribute under ``gen_ai.``,
``llm.``, ``ai.`` or ``traceloop.``) also loses its status description, the message
and stack of its exceptions and every other span event (per-message events, framework
logs); other spans are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MASKED",
    "is_ai_span",
    "is_content",
    "is_tool_definitions",
    "masked_tool_attribute",
    "masked_tools",
    "redacted",
    "redacted_record",
]

_AI_PREFIXES = ("gen_ai.", "llm.", "ai.", "traceloop.")
_CONTENT = frozenset(
    (
        # OpenTelemetry GenAI semantic conventions
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.retrieval.documents",
        "gen_ai.retrieval.query.text",
        "gen_ai.memory.query.text",
        "gen_ai.memory.records",
        "gen_ai.evaluation.explanation",
        "gen_ai.response.revised_prompt",
        # Traceloop / OpenLLMetry
        "traceloop.entity.input",
        "traceloop.entity.output",
        "traceloop.prompt.template",
        "gen_ai.task.input",
        "gen_ai.task.output",
        "gen_ai.guardrail.input",
        "gen_ai.guardrail.output",
        "gen_ai.guardrail.error.message",
        "mcp.response.value",
        "db.marqo.search.query",
        "anthropic.tool_result.content",
        # Vercel AI SDK
        "ai.prompt",
        "ai.prompt.messages",
        "ai.request.text",
        "ai.documents",
        "ai.response.text",
        "ai.response.object",
        "ai.response.toolCalls",
        "ai.response.reasoning",
        "ai.response.reasoningDetails",
        "ai.response.files",
        "ai.response.providerMetadata",
        "ai.toolCall.args",
        "ai.toolCall.result",
        "ai.value",
        "ai.values",
        "ai.embedding",
        "ai.embeddings",
        # Pydantic AI / Logfire
        "pydantic_ai.all_messages",
        "request_data",
        "response_data",
        "model_request_parameters",
        "final_result",
        "tool_arguments",
        "tool_response",
        "inputs",
        "prompt",
        "events",
        # OpenInference
        "input.value",
        "output.value",
        "llm.function_call",
        "llm.prompt_template.template",
        "llm.prompt_template.variables",
        "llm.invocation_parameters",  # holds instructions
        "reranker.query",
        # Langfuse
        "langfuse.trace.input",
        "langfuse.trace.output",
        "langfuse.observation.input",
        "langfuse.observation.output",
        "langfuse.observation.status_message",
        # Errors
        "exception.message",
        "exception.stacktrace",
        "error.message",
    )
)
_CONTENT_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.prompts.",
    "llm.completions.",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.choices.",
    "traceloop.prompt.template_variables.",
)
_CONTENT_PATTERN = re.compile(
    r"embedding\.embeddings\.\d+\.embedding\.(text|vector)"
    r"|retrieval\.documents\.\d+\.document\.(content|metadata)"
    r"|reranker\.(input|output)_documents\.\d+\.document\.content"
    r"|(input|output)\.images\.\d+\.image\.url"
    r"|mastra\.[a-z_]+\.(input|output)"
)
_NOT_CONTENT = frozenset(("gen_ai.prompt.name", "gen_ai.prompt.version"))


def is_content(key: str) -> bool:
    """Whether attribute ``key`` can hold prompts, completions, tool data or error text."""
    if key in _NOT_CONTENT:
        return False
    return (
        key in _CONTENT
        or key.startswith(_CONTENT_PREFIXES)
        or _CONTENT_PATTERN.fullmatch(key) is not None
    )


def is_ai_span(name: str, attributes: Mapping[str, Any]) -> bool:
    """Whether a span is an AI span: its name or one attribute under an AI prefix."""
    return name.startswith(_AI_PREFIXES) or any(key.startswith(_AI_PREFIXES) for key in attributes)


def redacted(attributes: Mapping[str, Any], *, private: bool) -> dict[str, Any]:
    """An AI span's ``attributes`` as they may be sent: MCP credentials masked in tool
    definitions; when ``private``, also without the content ones."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if private and is_content(key):
            continue
        if is_tool_definitions(key):
            value = masked_tool_attribute(value, strict=private)
            if value is None:
                continue
        out[key] = value
    return out


def redacted_record(record: dict[str, Any], *, private: bool) -> dict[str, Any]:
    """A traces-lane span record (``otel.span_record``) of an AI span as it may be sent
    (``redacted``); when ``private``, also only its ``exception`` events (their type
    kept, message and stack dropped) and no status description."""
    out = {**record, "attributes": redacted(record["attributes"], private=private)}
    if private:
        out["events"] = [
            {**event, "attributes": redacted(event["attributes"], private=True)}
            for event in record["events"]
            if event["name"] == "exception"
        ]
        out["status_message"] = None
    return out


# Tool definitions are not content and stay, but a remote MCP server's definition
# carries its credentials (``headers``, ``authorization``): masked on every export, as
# the official SDK does; in privacy mode a definition that cannot be read is dropped.
_TOOL_DEFINITIONS = frozenset(("gen_ai.tool.definitions", "ai.prompt.tools"))
_TOOL_SCHEMA = re.compile(r"llm\.tools\.\d+\.tool\.json_schema")
_CREDENTIALS = ("headers", "authorization")
_MCP_PROVIDER_TOOLS = frozenset(("openai.mcp", "xai.mcp", "google.mcp_server"))
MASKED = "[REDACTED]"


def is_tool_definitions(key: str) -> bool:
    """Whether attribute ``key`` holds tool definitions."""
    return key in _TOOL_DEFINITIONS or _TOOL_SCHEMA.fullmatch(key) is not None


def masked_tools(tools: Any) -> Any:
    """Parsed tool definitions (a list or one definition) with MCP credentials masked;
    the same object when there is nothing to mask."""
    if isinstance(tools, list):
        items = [_masked_tool(tool) for tool in tools]
        return items if any(a is not b for a, b in zip(items, tools, strict=True)) else tools
    return _masked_tool(tools)


def masked_tool_attribute(value: Any, *, strict: bool) -> Any:
    """A tool-definitions attribute (JSON text or an array of JSON texts) with MCP
    credentials masked; ``None`` (leave it out) for what cannot be read when ``strict``."""
    if isinstance(value, str):
        return _masked_json(value, strict)
    if isinstance(value, list | tuple):
        items = [_masked_json(item, strict) if isinstance(item, str) else item for item in value]
        if strict and any(not isinstance(item, str) for item in items):
            items = [item for item in items if isinstance(item, str)]
        return items
    return None if strict else value


def _masked_json(text: str, strict: bool) -> Any:
    try:
        tools = json.loads(text)
    except (ValueError, RecursionError):
        return None if strict else text
    if not isinstance(tools, list | dict):
        return None if strict else text
    masked = masked_tools(tools)
    return text if masked is tools else json.dumps(masked)


def _masked_tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool
    if tool.get("type") == "mcp":
        return _without_credentials(tool)
    args = tool.get("args")
    if (
        tool.get("type") in ("provider", "provider-defined")
        and tool.get("id") in _MCP_PROVIDER_TOOLS
        and isinstance(args, dict)
    ):
        return {**tool, "args": _without_credentials(args)}
    return tool


def _without_credentials(config: dict[str, Any]) -> dict[str, Any]:
    if not any(config.get(key) is not None for key in _CREDENTIALS):
        return config
    return {
        key: MASKED if key in _CREDENTIALS and value is not None else value
        for key, value in config.items()
    }
