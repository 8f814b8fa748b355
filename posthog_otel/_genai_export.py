"""What ``PostHogSpanExporter`` does with GenAI spans: each becomes its LLM analytics
event on the AI route (``client.capture_ai``) instead of an analytics event, and each
trace that had GenAI spans gets one ``$ai_trace``.

The ``$ai_trace`` rule: a trace's *local root* (a span without a parent, or whose
parent is remote: the entry of this process) sends it when it ends, if the root is a
GenAI span itself or this exporter already saw a GenAI span of the trace. Children end
before their parent, so the root is the last span of its trace here; a GenAI span that
ends after its root (work left running) adds no second ``$ai_trace``. The root keeps
its own event as well (its ``$ai_span``/``$ai_generation``, or its analytics event when
it is not a GenAI span): PostHog builds the trace's tree from those, and the
``$ai_trace`` only carries the trace's name, latency, error and input/output state.

Identity: a span's own distinct id (``IDENTITY_KEYS``, then the identity stamped by
``instrument()``); without one the event is personless, as the official SDK sends AI
events: the trace id as distinct id and ``$process_person_profile: false``. The
``$ai_trace`` takes the root's identity, else the first one a GenAI span of the trace
had.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._config import env_first
from ._fork import fork_safe_lock
from ._genai import TRACE, ai_properties, classify, trace_properties
from ._integration import first_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from .client import Client

__all__ = ["GenAiSpans"]

_OPEN_TRACES = 10_000
"""Traces with GenAI spans whose root has not ended yet, at most: the oldest is
forgotten first (its root then sends no ``$ai_trace``), so a root that never ends
here cannot grow memory."""


def _privacy_mode(value: object) -> bool:
    """``privacy_mode``, else ``POSTHOG_PRIVACY_MODE`` (the zero-code exporter takes no
    arguments): set and not ``0``/``false``/``no``/``off``, privacy mode is on."""
    if value is None:
        env = env_first("POSTHOG_PRIVACY_MODE")
        return env is not None and env.lower() not in ("0", "false", "no", "off")
    return _flag("privacy_mode", value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"PostHogSpanExporter({name}=...) must be True or False, not {value!r}")
    return value


class GenAiSpans:
    """The GenAI side of one span exporter: the options, and the traces in flight."""

    def __init__(
        self,
        *,
        privacy_mode: object,
        enable_full_ai_capture: object,
        identity_keys: tuple[str, ...],
        session_keys: tuple[str, ...],
        hidden: frozenset[str],
    ) -> None:
        self.privacy_mode = _privacy_mode(privacy_mode)
        self.enable_full_ai_capture = _flag("enable_full_ai_capture", enable_full_ai_capture)
        self._identity_keys = identity_keys
        self._session_keys = session_keys
        self._hidden = hidden
        self._lock = fork_safe_lock()
        # trace id -> the first distinct id one of its GenAI spans had (or None)
        self._open: OrderedDict[int, str | None] = OrderedDict()

    def export(self, client: Client, span: ReadableSpan, attributes: Mapping[str, Any]) -> bool:
        """Send ``span``'s LLM analytics event(s) through ``client``; ``True`` when it is
        a GenAI span (it
        then gets no analytics event). A non-GenAI local root may still send the
        ``$ai_trace`` of its trace (and returns ``False``)."""
        context = span.context
        if context is None:
            return False
        kind = classify(attributes)
        local_root = span.parent is None or span.parent.is_remote
        distinct_id = first_id(attributes, self._identity_keys)
        properties = None
        if kind is not None:
            event, span_type = kind
            properties = ai_properties(
                span,
                event,
                span_type,
                privacy_mode=self.privacy_mode,
                full_capture=self.enable_full_ai_capture,
                hidden=self._hidden,
            )
            self._send(client, event, span, attributes, dict(properties), distinct_id)
        if local_root:
            with self._lock:
                seen = context.trace_id in self._open
                first = self._open.pop(context.trace_id, None)
            if kind is not None or seen:
                trace = trace_properties(span, properties, privacy_mode=self.privacy_mode)
                self._send(client, TRACE, span, attributes, trace, distinct_id or first)
        elif kind is not None:
            with self._lock:
                if self._open.get(context.trace_id) is None:
                    self._open[context.trace_id] = distinct_id
                    self._open.move_to_end(context.trace_id)
                    while len(self._open) > _OPEN_TRACES:
                        self._open.popitem(last=False)
        return kind is not None

    def _send(
        self,
        client: Client,
        event: str,
        span: ReadableSpan,
        attributes: Mapping[str, Any],
        properties: dict[str, Any],
        distinct_id: str | None,
    ) -> None:
        """Through ``capture_ai`` (its admission, ``before_send``, the AI route), stamped
        at the span's start, as LLM analytics orders a trace's steps."""
        if distinct_id is None:
            distinct_id = properties["$ai_trace_id"]
            properties["$process_person_profile"] = False
        session = first_id(attributes, self._session_keys)
        if session is not None:
            properties.setdefault("$session_id", session)
        start = span.start_time
        timestamp = datetime.fromtimestamp(start / 1e9, timezone.utc) if start else None
        client.capture_ai(event, distinct_id, properties, timestamp=timestamp)
