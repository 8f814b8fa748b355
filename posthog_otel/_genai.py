"""OpenTelemetry GenAI spans as LLM analytics events: a pure mapping, span in, event out.

A span is a GenAI span when it follows the GenAI semantic conventions
(``gen_ai.operation.name``, else ``gen_ai.provider.name``/``gen_ai.system`` or a
``gen_ai.request.model``/``gen_ai.response.model``) or OpenLLMetry's older forms
(``llm.request.type``, ``traceloop.span.kind``). ``classify`` names its event:

- ``$ai_generation``: ``chat``, ``text_completion``, ``generate_content`` (and the older
  ``completion``); a span with a provider or model but no operation;
- ``$ai_embedding``: ``embeddings``;
- ``$ai_span`` with ``$ai_span_type``: ``execute_tool`` (``tool``), ``invoke_agent`` and
  ``create_agent`` (``agent``), ``invoke_workflow`` (``workflow``), ``retrieval``, any
  other operation under its own name, OpenLLMetry's ``workflow``/``task``/``agent``/
  ``tool`` spans.

``ai_properties`` maps what PostHog names (the table in README "LLM analytics", the
property names of the official SDK's ``posthog.ai`` wrappers) and passes every other
attribute through under its own name; an attribute that was mapped is not repeated.
``trace_properties`` is the ``$ai_trace`` of a trace root. No OpenTelemetry import: the
span is read through the ``ReadableSpan`` attributes only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._genai_content import from_events, indexed, is_index, parsed, redact_media
from ._genai_privacy import is_content, is_tool_definitions, masked_tool_attribute, masked_tools

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = [
    "EMBEDDING",
    "GENERATION",
    "SPAN",
    "TRACE",
    "ai_properties",
    "classify",
    "trace_properties",
]

GENERATION = "$ai_generation"
EMBEDDING = "$ai_embedding"
SPAN = "$ai_span"
TRACE = "$ai_trace"

_OPERATIONS = {
    "chat": GENERATION,
    "text_completion": GENERATION,
    "generate_content": GENERATION,
    "completion": GENERATION,  # pre-1.30 conventions, OpenLLMetry
    "embeddings": EMBEDDING,
    "embedding": EMBEDDING,
}
_SPAN_TYPES = {
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "invoke_workflow": "workflow",
}
_TRACELOOP_KINDS = frozenset(("workflow", "task", "agent", "tool"))
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
# The requested model first, as the official SDK's wrappers and PostHog's own OTel
# mapping do (cost lookups match it); the model that answered, when another, goes
# through under its own name (``gen_ai.response.model``).
_MODEL = ("gen_ai.request.model", "gen_ai.response.model")
_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_TOTAL_TOKENS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")
# Reported only when above zero, as the official SDK does.
_POSITIVE_TOKENS = {
    "$ai_cache_read_input_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry
    ),
    "$ai_cache_creation_input_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    ),
    "$ai_reasoning_tokens": (
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
    ),
}
_MODEL_PARAMETERS = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.top_k": "top_k",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.stop_sequences": "stop",
    "gen_ai.request.choice.count": "n",
}
# A count beyond int64 is no count (and int() refuses text of over 4300 digits).
_MAX_COUNT = 2**63
_COUNT_DIGITS = 18
_HTTP_STATUS = ("http.response.status_code", "http.status_code")
_INPUT = ("gen_ai.input.messages", "gen_ai.prompt")
_OUTPUT = ("gen_ai.output.messages", "gen_ai.completion")
_STEP_INPUT = ("gen_ai.tool.call.arguments", "traceloop.entity.input", "gen_ai.input.messages")
_STEP_OUTPUT = ("gen_ai.tool.call.result", "traceloop.entity.output", "gen_ai.output.messages")
_MAPPED = frozenset(
    (
        *_PROVIDER,
        _MODEL[0],
        *_INPUT_TOKENS,
        *_OUTPUT_TOKENS,
        *_TOTAL_TOKENS,
        *(key for keys in _POSITIVE_TOKENS.values() for key in keys),
        *_MODEL_PARAMETERS,
        *_HTTP_STATUS,
        *_INPUT,
        *_OUTPUT,
        *_STEP_INPUT,
        *_STEP_OUTPUT,
        "gen_ai.system_instructions",
        "gen_ai.response.finish_reasons",
        "gen_ai.response.id",
        "gen_ai.conversation.id",
        "gen_ai.tool.definitions",
        "error.type",
    )
)
_MAPPED_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.", "llm.request.functions.")


def classify(attributes: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """``(event, span type)`` for a GenAI span, ``None`` for any other span."""
    operation = attributes.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation:
        event = _OPERATIONS.get(operation)
        return (event, None) if event else (SPAN, _SPAN_TYPES.get(operation, operation))
    request_type = attributes.get("llm.request.type")  # OpenLLMetry before gen_ai.operation
    if isinstance(request_type, str) and request_type:
        event = _OPERATIONS.get(request_type)
        return (event, None) if event else (SPAN, request_type)
    kind = attributes.get("traceloop.span.kind")
    if kind in _TRACELOOP_KINDS:
        return SPAN, str(kind)
    if _first(attributes, _PROVIDER) is not None or _first(attributes, _MODEL) is not None:
        return GENERATION, None
    return None


def ai_properties(
    span: ReadableSpan,
    event: str,
    span_type: str | None,
    *,
    privacy_mode: bool,
    full_capture: bool,
    hidden: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The ``$ai_*`` properties of GenAI span ``span`` (``classify``'s ``event`` and
    ``span_type``), then its other attributes but ``hidden`` under their own names.
    ``privacy_mode`` leaves out every prompt, completion and tool content;
    ``full_capture`` keeps base64 media instead of placeholders (CAI-07)."""
    attributes: Mapping[str, Any] = span.attributes or {}
    props = _ids(span)
    props["$ai_span_name"] = _step_name(span, attributes)
    if span_type is not None:
        props["$ai_span_type"] = span_type
    if span.start_time is not None and span.end_time is not None:
        props["$ai_latency"] = (span.end_time - span.start_time) / 1e9
    if span.resource is not None:
        _put(props, "$service_name", span.resource.attributes.get("service.name"))
    _put(props, "$ai_provider", _first(attributes, _PROVIDER))
    _put(props, "$ai_model", _first(attributes, _MODEL))
    _usage(props, attributes)
    parameters = {
        name: parsed(attributes[key])
        for key, name in _MODEL_PARAMETERS.items()
        if key in attributes
    }
    if parameters:
        props["$ai_model_parameters"] = parameters
    reasons = attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, tuple | list):
        reasons = reasons[0] if reasons else None
    _put(props, "$ai_stop_reason", reasons)
    _put(props, "$ai_response_id", attributes.get("gen_ai.response.id"))
    _put(props, "$ai_session_id", attributes.get("gen_ai.conversation.id"))
    _put(props, "$ai_tools", _tools(attributes, privacy_mode))
    _errors(props, span, attributes, privacy_mode)
    if not privacy_mode:
        _content(props, span, attributes, event, full_capture)
    for key, value in attributes.items():
        if key in _MAPPED or key in hidden or key.startswith(_MAPPED_PREFIXES):
            continue
        if privacy_mode and is_content(key):
            continue
        if is_tool_definitions(key):
            value = masked_tool_attribute(value, strict=privacy_mode)
            if value is None:
                continue
        value = list(value) if isinstance(value, tuple) else value
        # CAI-07 also where a message was flattened into attributes we do not map
        # (OpenInference's llm.input_messages.N.message.contents.M...image.url)
        props.setdefault(key, value if full_capture else redact_media(value))
    return props


def trace_properties(
    root: ReadableSpan, root_properties: Mapping[str, Any] | None, *, privacy_mode: bool
) -> dict[str, Any]:
    """The ``$ai_trace`` of a trace whose (local) root span is ``root``: the trace id,
    the root's name and latency, its error; with ``root_properties`` (a GenAI root's
    own ``ai_properties``) also its conversation and its input and output, as state."""
    props: dict[str, Any] = {"$ai_trace_id": _ids(root)["$ai_trace_id"]}
    name = root_properties.get("$ai_span_name") if root_properties else None
    props["$ai_trace_name"] = props["$ai_span_name"] = name or root.name
    if root.start_time is not None and root.end_time is not None:
        props["$ai_latency"] = (root.end_time - root.start_time) / 1e9
    if root_properties is None:
        _errors(props, root, root.attributes or {}, privacy_mode)
        props.pop("$ai_http_status", None)
        return props
    for key in ("$ai_session_id", "$ai_is_error", "$ai_error", "$ai_error_type"):
        _put(props, key, root_properties.get(key))
    for state, sources in (
        ("$ai_input_state", ("$ai_input_state", "$ai_input")),
        ("$ai_output_state", ("$ai_output_state", "$ai_output_choices")),
    ):
        _put(props, state, _first(root_properties, sources))
    return props


def _tools(attributes: Mapping[str, Any], privacy_mode: bool) -> Any:
    """``$ai_tools``: the tool definitions with a remote MCP server's credentials
    masked; in privacy mode, none that cannot be read (they could hold credentials)."""
    tools = attributes.get("gen_ai.tool.definitions")
    if tools is None:
        return indexed(attributes, "llm.request.functions")
    tools = parsed(tools)
    if isinstance(tools, list) and tools and all(isinstance(tool, str) for tool in tools):
        tools = [parsed(tool) for tool in tools]  # an array of JSON texts
    if privacy_mode and not isinstance(tools, list | dict):
        return None
    return masked_tools(tools)


def _ids(span: ReadableSpan) -> dict[str, Any]:
    props: dict[str, Any] = {}
    context = span.context
    if context is not None:
        props["$ai_trace_id"] = f"{context.trace_id:032x}"
        props["$ai_span_id"] = f"{context.span_id:016x}"
    if span.parent is not None:
        props["$ai_parent_id"] = f"{span.parent.span_id:016x}"
    return props


def _step_name(span: ReadableSpan, attributes: Mapping[str, Any]) -> str:
    """What the step is called: the tool's or agent's name, else the span's."""
    for key in ("gen_ai.tool.name", "gen_ai.agent.name", "traceloop.entity.name"):
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return span.name


def _usage(props: dict[str, Any], attributes: Mapping[str, Any]) -> None:
    """Token counts: absent when not reported (0 is a report of none); cache and
    reasoning counts only when above zero."""
    _put(props, "$ai_input_tokens", _count(attributes, _INPUT_TOKENS))
    _put(props, "$ai_output_tokens", _count(attributes, _OUTPUT_TOKENS))
    _put(props, "$ai_total_tokens", _count(attributes, _TOTAL_TOKENS))
    cached = False
    for name, keys in _POSITIVE_TOKENS.items():
        count = _count(attributes, keys)
        if count is not None and count > 0:
            props[name] = count
            cached = cached or name != "$ai_reasoning_tokens"
    if cached:
        # The conventions count cached tokens inside gen_ai.usage.input_tokens (and
        # OpenLLMetry sums them in): said explicitly, as the official SDK does for
        # OpenAI-shaped usage, or PostHog's cost backend infers exclusive counts from a
        # Claude model's name and charges the cached tokens twice.
        props["$ai_cache_reporting_exclusive"] = False


def _errors(
    props: dict[str, Any], span: ReadableSpan, attributes: Mapping[str, Any], privacy_mode: bool
) -> None:
    """``$ai_http_status`` and, for a failed call (status ERROR or an ``error.type``),
    ``$ai_is_error``, ``$ai_error`` (the status description or the recorded exception's
    message; only the error's type in privacy mode) and ``$ai_error_type``."""
    status = _count(attributes, _HTTP_STATUS)
    error_type = attributes.get("error.type")
    if status is None:  # the conventions' error.type for an HTTP error: "429"
        status = _count(attributes, ("error.type",))
    _put(props, "$ai_http_status", status)
    if span.status.status_code.name != "ERROR" and error_type is None:
        return  # an exception recorded on a call that then succeeded is no failure
    message: Any = span.status.description
    for event in span.events:
        if event.name == "exception":
            exception = event.attributes or {}
            error_type = error_type or exception.get("exception.type")
            message = message or exception.get("exception.message")
    props["$ai_is_error"] = True
    props["$ai_error"] = (
        str(error_type or "error") if privacy_mode else str(message or error_type or "error")
    )
    _put(props, "$ai_error_type", error_type)


def _content(
    props: dict[str, Any],
    span: ReadableSpan,
    attributes: Mapping[str, Any],
    event: str,
    full_capture: bool,
) -> None:
    """Prompt and completion (``$ai_input``, ``$ai_output_choices``, ``$ai_instructions``)
    of a generation or embedding; a step's input and output (``$ai_input_state``,
    ``$ai_output_state``). From attributes, else from the span's events."""
    inputs, outputs, instructions = from_events(span.events) if span.events else (None,) * 3
    if event in (GENERATION, EMBEDDING):
        values = {
            "$ai_input": _parsed_first(attributes, _INPUT)
            or indexed(attributes, "gen_ai.prompt")
            or inputs,
            "$ai_output_choices": _parsed_first(attributes, _OUTPUT)
            or indexed(attributes, "gen_ai.completion")
            or outputs,
            "$ai_instructions": _parsed_first(attributes, ("gen_ai.system_instructions",))
            or instructions,
        }
    else:
        values = {
            "$ai_input_state": _parsed_first(attributes, _STEP_INPUT) or inputs,
            "$ai_output_state": _parsed_first(attributes, _STEP_OUTPUT) or outputs,
        }
    for name, value in values.items():
        if value is None:
            continue
        try:
            props[name] = value if full_capture else redact_media(value)
        except RecursionError:  # nested too deeply to check for media: left out
            continue


def _first(values: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = values.get(key)
        if value is not None and value != "":
            return value
    return None


def _parsed_first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    value = _first(attributes, keys)
    return None if value is None else parsed(value)


def _count(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < _MAX_COUNT:
            return int(value)
        if isinstance(value, str) and is_index(value, _COUNT_DIGITS):
            return int(value)  # recorded as text by some instrumentations
    return None


def _put(props: dict[str, Any], name: str, value: Any) -> None:
    if value is not None and value != "":
        props[name] = value
