"""The prompt and completion content of a GenAI span, in the shapes LLM analytics shows.

OpenTelemetry attributes hold only scalars and arrays of scalars, so instrumentations
record messages as JSON text (``gen_ai.input.messages``, the older ``gen_ai.prompt``),
as one attribute per field (Traceloop/OpenLLMetry: ``gen_ai.prompt.0.role``,
``gen_ai.prompt.0.content``, ``gen_ai.prompt.0.tool_calls.0.name``), or as span events
(``gen_ai.content.prompt``, ``gen_ai.user.message``, ``gen_ai.choice``...). These
functions turn each form back into the structure the instrumentation serialised, and
leave it otherwise as recorded (CAI-08): no renaming of roles or parts.

One exception, CAI-07: base64 media (a ``data:`` URL anywhere, or a long base64 string
where a media part keeps its bytes) becomes a typed placeholder such as
``"[base64 image redacted]"`` (the official SDK's wording) unless full AI capture is on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["from_events", "indexed", "is_index", "parsed", "redact_media"]

_DATA_URL = re.compile(r"data:([^;,]+);base64,")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_MIN_BARE_BASE64 = 200  # a shorter string under a media key is left alone
# Keys under which a long base64 string is media (OpenAI, Anthropic, Gemini parts).
_MEDIA_KEYS = frozenset(
    (
        "data",
        "image_url",
        "imageUrl",
        "audio",
        "audio_data",
        "inline_data",
        "inlineData",
        "file_data",
        "fileData",
        "video_url",
        "b64_json",
    )
)
_URL_CONTAINERS = frozenset(("image_url", "imageUrl", "video_url", "videoUrl"))
_MIME_KEYS = ("mime_type", "mimeType", "media_type", "mediaType", "format", "modality")
_BLOB_TYPES = frozenset(("blob", "image", "audio", "video", "file"))
_WORDS = {
    **dict.fromkeys(("wav", "mp3", "pcm16", "pcm", "flac", "opus", "aac", "ogg", "m4a"), "audio"),
    **dict.fromkeys(("mp4", "mov", "webm", "avi", "mkv"), "video"),
    **dict.fromkeys(("png", "jpg", "jpeg", "gif", "webp", "bmp", "svg"), "image"),
    **{word: word for word in ("image", "audio", "video")},
}


def parsed(value: Any) -> Any:
    """An attribute value as the structure it encodes: JSON text that parses to an
    array or object is parsed, an OpenTelemetry array becomes a list, anything else
    is returned unchanged."""
    if isinstance(value, str):
        text = value.lstrip()
        if text[:1] in ("[", "{"):
            try:
                return json.loads(value)
            except (ValueError, RecursionError):  # not JSON, or nested beyond reason
                return value
        return value
    if isinstance(value, tuple):
        return list(value)
    return value


def indexed(attributes: Mapping[str, Any], prefix: str) -> list[Any] | None:
    """The list that ``prefix.N.field...`` attributes flatten (``gen_ai.prompt.0.role``,
    ``gen_ai.completion.0.tool_calls.1.name``): one dict per index, in index order, with
    nested indices as lists. ``None`` when there is no such attribute."""
    start = prefix + "."
    items: dict[int, dict[str, Any]] = {}
    for key, value in attributes.items():
        if not key.startswith(start):
            continue
        index, _, rest = key[len(start) :].partition(".")
        if not is_index(index) or not rest:
            continue
        _set_path(items.setdefault(int(index), {}), rest.split("."), _content_value(value))
    if not items:
        return None
    return [_listed(items[index]) for index in sorted(items)]


def is_index(text: str, digits: int = 9) -> bool:
    """Whether ``text`` is a decimal number ``int()`` takes, of at most ``digits``
    digits (``str.isdigit`` also accepts "²", which ``int()`` refuses)."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _content_value(value: Any) -> Any:
    """A flattened field: a JSON array (what OpenLLMetry writes for multimodal content
    parts) is parsed; other text, JSON objects included (tool call arguments are JSON
    text in the providers' own shapes), stays as recorded."""
    result = parsed(value)
    return result if isinstance(result, list) else value


def _event_field(key: str, value: Any) -> Any:
    """A span event's field: structures (``message``, ``tool_calls``) were recorded as
    JSON text and are parsed; ``content`` is text unless it is an array of parts."""
    return _content_value(value) if key == "content" else parsed(value)


def _set_path(node: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _listed(node: Any) -> Any:
    """Dicts whose keys are all indices become lists (``tool_calls.0.name``)."""
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(key, str) and is_index(key) for key in node):
        return [_listed(node[key]) for key in sorted(node, key=int)]
    return {key: _listed(value) for key, value in node.items()}


# Span events that carry content: the pre-1.28 semantic conventions' per-message events
# (the role is the event's name) and the older whole-prompt events.
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def from_events(events: Iterable[Any]) -> tuple[Any, Any, Any]:
    """``(input, output, instructions)`` recorded as span events (each ``None`` when
    absent): per-message events, ``gen_ai.choice``, ``gen_ai.content.prompt`` /
    ``gen_ai.content.completion``, and the inference-details event carrying
    ``gen_ai.input.messages`` / ``gen_ai.output.messages``."""
    inputs: list[Any] = []
    outputs: list[Any] = []
    prompt = completion = instructions = None
    for event in events:
        name = event.name
        attributes: Mapping[str, Any] = event.attributes or {}
        if name in _MESSAGE_EVENTS:
            inputs.append(_event_message(attributes, _MESSAGE_EVENTS[name]))
        elif name == "gen_ai.choice":
            outputs.append(_event_choice(attributes))
        elif name == "gen_ai.content.prompt" and "gen_ai.prompt" in attributes:
            prompt = parsed(attributes["gen_ai.prompt"])
        elif name == "gen_ai.content.completion" and "gen_ai.completion" in attributes:
            completion = parsed(attributes["gen_ai.completion"])
        else:  # e.g. gen_ai.client.inference.operation.details
            if "gen_ai.input.messages" in attributes:
                prompt = parsed(attributes["gen_ai.input.messages"])
            if "gen_ai.output.messages" in attributes:
                completion = parsed(attributes["gen_ai.output.messages"])
            if "gen_ai.system_instructions" in attributes:
                instructions = parsed(attributes["gen_ai.system_instructions"])
    return (
        prompt if prompt is not None else inputs or None,
        completion if completion is not None else outputs or None,
        instructions,
    )


def _event_message(attributes: Mapping[str, Any], role: str) -> dict[str, Any]:
    body = parsed(attributes.get("gen_ai.event.content"))
    message: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    for key, value in attributes.items():
        if key not in ("gen_ai.event.content", "gen_ai.system", "gen_ai.provider.name"):
            message[key] = _event_field(key, value)
    message.setdefault("role", role)
    return message


def _event_choice(attributes: Mapping[str, Any]) -> Any:
    body = parsed(attributes.get("gen_ai.event.content"))
    if isinstance(body, dict):
        return body
    return {
        key: _event_field(key, value)
        for key, value in attributes.items()
        if key not in ("gen_ai.system", "gen_ai.provider.name")
    }


def redact_media(value: Any) -> Any:
    """``value`` with its base64 media replaced by typed placeholders (CAI-07); the
    same object when there is nothing to replace."""
    return _walk(value, None, None, None)


def _walk(node: Any, key: str | None, parent: dict[str, Any] | None, parent_key: Any) -> Any:
    if isinstance(node, str):
        return _redacted_string(node, key, parent, parent_key)
    if isinstance(node, dict):
        changed = False
        out: dict[str, Any] = {}
        for k, v in node.items():
            new = _walk(v, k, node, key)
            changed = changed or new is not v
            out[k] = new
        return out if changed else node
    if isinstance(node, list):
        items = [_walk(item, key, parent, parent_key) for item in node]
        return items if any(a is not b for a, b in zip(items, node, strict=True)) else node
    return node


def _redacted_string(
    value: str, key: str | None, parent: dict[str, Any] | None, parent_key: Any
) -> str:
    match = _DATA_URL.match(value)
    if match:
        return _placeholder(match.group(1))
    media = (
        key in _MEDIA_KEYS
        or (key == "url" and parent_key in _URL_CONTAINERS)
        # the semantic conventions' BlobPart: {"type": "blob", "content": "<base64>"}
        or (key == "content" and parent is not None and parent.get("type") in _BLOB_TYPES)
    )
    if media and len(value) >= _MIN_BARE_BASE64 and _BASE64.fullmatch(value):
        return _placeholder(_hint(parent))
    return value


def _hint(parent: dict[str, Any] | None) -> str | None:
    if parent is None:
        return None
    for key in _MIME_KEYS:
        value = parent.get(key)
        if isinstance(value, str):
            return value
    kind = parent.get("type")
    return kind if isinstance(kind, str) and kind in _WORDS else None


def _placeholder(mime: str | None) -> str:
    """``[base64 <image|audio|video|file> redacted]``: what kind of media it was."""
    if not mime:
        word = "image"
    elif "/" in mime:
        kind = mime.split("/", 1)[0].lower()
        word = kind if kind in ("image", "audio", "video") else "file"
    else:
        word = _WORDS.get(mime.lower(), "file")
    return f"[base64 {word} redacted]"
