"""``PostHogProcessor``: structlog events that carry a distinct id become PostHog events.

Place it after ``merge_contextvars``/``add_log_level``/``add_logger_name`` and before
``format_exc_info`` and the final renderer::

    structlog.configure(processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        PostHogProcessor(),
        structlog.processors.JSONRenderer(),
    ])

``log.info("user_signed_up", distinct_id="u1", plan="pro")`` becomes the event
``user_signed_up`` for ``u1`` with property ``plan``. The processor returns the event
dict unchanged (the chain goes on) and never raises. On the logging thread it takes
the values of the moment (``posthog_otel._snapshot``: a later change to a dict or list
passed to the call is not sent) and queues them with the identity, level and span; an
``exc_info`` exception, positional arguments or a ``_record`` are never queued. The
event is built (and ``before_send`` runs) on the client's flush thread.

Keys that are structlog's own bookkeeping and never become properties: ``event``,
``timestamp``, ``level``, ``logger``, ``exc_info``, ``exception``, ``stack``,
``stack_info``, ``stacklevel``, ``positional_args``, ``_record``, ``_from_structlog``
(and any ``_``-prefixed key), plus the distinct id key and ``groups``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import _structlog_call
from ._context import IdentityContext, _current
from ._exc_snapshot import Boundary, ExcEntry, entries_bytes, normalize_level
from ._exc_text import parse_rendered
from ._integration import PERSONLESS, active_span_ids, first_id, resolve_client
from ._log import is_internal_thread, logger
from ._logs import exception_attributes
from ._snapshot import (
    ENTRY_BYTES,
    EVENT_BYTES,
    IMMUTABLE,
    Correct,
    snapshot_value,
    snapshot_values,
)

if TYPE_CHECKING:
    from .client import Client
    from .pipeline import CaptureFields

__all__ = ["PostHogProcessor", "event_dict_capture", "event_dict_log", "event_dict_log_record"]

_BOOKKEEPING = frozenset(
    {
        "event",
        "timestamp",
        "level",
        "logger",
        "exc_info",
        "exception",
        "stack",
        "stack_info",
        "stacklevel",
        "positional_args",
    }
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "msg": logging.INFO,
}


class PostHogProcessor:
    """A structlog processor that captures events carrying a distinct id.

    The distinct id comes from the event dict (``distinct_id_key``), then structlog's
    bound context variables, then the identity context. Events below ``level`` and
    events without an identity (unless ``personless=True``) are passed on untouched.

    Error tracking: an event with an exception (``log.exception(...)``,
    ``exc_info=True``/a tuple/an exception, or the ``exception`` key that
    ``format_exc_info``/``dict_tracebacks`` leave when they run first) also becomes an
    ``$exception`` event (level from the event, mechanism ``logger``, ``handled``,
    source ``structlog.processor``), personless without an identity;
    ``exceptions=False`` turns that off, ``event_with_exception=False`` sends only the
    ``$exception`` for such events.

    PostHog Logs: with ``logs=True`` every event at or above ``logs_level`` (with or
    without a distinct id) is also sent as a log record (``client.capture_log``, see
    ``event_dict_log``); ``level`` gates the analytics events only.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        level: int | str = logging.INFO,
        distinct_id_key: str = "distinct_id",
        personless: bool = False,
        exceptions: bool = True,
        event_with_exception: bool = True,
        logs: bool = False,
        logs_level: int | str = logging.INFO,
        api_key: str | None = None,
        host: str | None = None,
    ) -> None:
        self.client, _ = resolve_client(client, api_key, host)
        self.logs = bool(logs)
        """Send events at or above ``logs_level`` to PostHog Logs too."""
        self.logs_level = _level_number(logs_level)
        self.exceptions = exceptions
        """Send events carrying an exception as ``$exception`` events too."""
        self.event_with_exception = event_with_exception
        """Also send the plain event for an event sent as an ``$exception``."""
        self.follows_default_client = True
        """Whether ``set_default_client`` points this processor at a new default client."""
        self.level = _level_number(level)
        self.distinct_id_key = distinct_id_key
        self.personless = personless
        self._skip = _BOOKKEEPING | {distinct_id_key, "groups"}
        # One bound method for every queued item, not a new one per item: one object
        # fewer for each queued event to allocate and for the garbage collector to walk.
        self._builder = self._build
        self._exception_builder = self._build_exception
        self.errors = 0
        """Events that could not be captured because of an internal error."""

    def __call__(
        self, wrapped_logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        try:
            self._capture(wrapped_logger, method_name, event_dict)
        except Exception:
            self.errors += 1
            logger.debug("PostHogProcessor could not capture an event", exc_info=True)
        return event_dict

    def _capture(
        self, wrapped_logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> None:
        _structlog_call.clear()
        if is_internal_thread():
            return
        level_name = str(event_dict.get("level") or method_name).lower()
        levelno = _LEVELS.get(level_name, logging.INFO)
        lanes = 0
        if self.logs and levelno >= self.logs_level:
            lanes = self._ship_log(wrapped_logger, event_dict, levelno)
        if levelno >= self.level:
            lanes |= self._capture_event(wrapped_logger, event_dict, level_name)
        if lanes:  # PostHogHandler skips this call's stdlib record for these lanes
            _structlog_call.mark_captured(lanes)

    def _capture_event(
        self, wrapped_logger: Any, event_dict: MutableMapping[str, Any], level_name: str
    ) -> int:
        """Queue the analytics event and/or ``$exception`` of the call; ``EVENTS`` when
        one was queued, else 0."""
        exception = _exception_of(event_dict) if self.exceptions else None
        name = event_dict.get("event")
        named = isinstance(name, str) and bool(name)
        if not named and exception is None:
            return 0
        send_event = named and (exception is None or self.event_with_exception)
        distinct_id = first_id(event_dict, (self.distinct_id_key,))
        if distinct_id is None:
            distinct_id = _bound_contextvar(self.distinct_id_key)
        ctx = event_ctx = _current.get()
        if distinct_id is None and (ctx is None or not ctx.distinct_id):
            if not self.personless:
                send_event = False
            event_ctx = ctx or PERSONLESS
        if not send_event and exception is None:
            return 0
        name = name if isinstance(name, str) else ""
        logger_name = event_dict.get("logger") or getattr(wrapped_logger, "name", None)
        pipeline = self.client.pipeline
        # Like the logging handler: on this thread only the values of the moment (later
        # processors, or the caller, may change them) and an append; the event is built
        # on the flush thread.
        # When every value is a scalar, a copy of the dict is all it takes (its
        # bookkeeping keys are left out on the flush thread); otherwise the properties
        # are picked here and their values copied, so that exc_info, positional
        # arguments or a _record are never queued.
        values = dict(event_dict)
        nbytes = EVENT_BYTES + ENTRY_BYTES * len(values)
        for value in values.values():
            cls = type(value)
            if cls is str:
                nbytes += len(value)
            elif cls not in IMMUTABLE:
                values, nbytes = self._snapshot(event_dict, pipeline.correct, name)
                break
        item = (
            values,
            name,
            distinct_id,
            event_ctx,
            level_name,
            logger_name,
            active_span_ids(),
            time.time(),
        )
        if send_event:
            pipeline.defer((self._builder, *item), nbytes)
        if exception is not None:
            intake = self.client.exceptions
            if isinstance(exception, list):
                taken = intake.take_entries(None, exception, distinct_id, ctx)
            else:
                taken = intake.take(exception, distinct_id, ctx)
            if taken is not None:
                size = nbytes + entries_bytes(taken[0])
                pipeline.defer((self._exception_builder, *item, *taken), size)
        return _structlog_call.EVENTS

    def _ship_log(
        self, wrapped_logger: Any, event_dict: MutableMapping[str, Any], levelno: int
    ) -> int:
        """Send the event to PostHog Logs, on this thread (``capture_log`` copies the
        values, takes the identity context and the active span's ids); ``LOGS`` when it
        was handed to ``capture_log`` (sent, or dropped by its gates: either way the
        handler must not hand it over again), else 0."""
        logger_name = event_dict.get("logger") or getattr(wrapped_logger, "name", None)
        log = event_dict_log_record(event_dict, self.distinct_id_key, logger_name)
        if log is None:
            return 0
        self.client.capture_log(log[0], levelno, log[1])
        return _structlog_call.LOGS

    def _snapshot(
        self, event_dict: MutableMapping[str, Any], correct: Correct, name: str
    ) -> tuple[dict[str, Any], int]:
        """The properties (and ``groups``) of ``event_dict`` with their values copied,
        and their estimated size: ``_capture`` when some value is not a scalar."""
        skip = self._skip
        values = {
            key: value for key, value in event_dict.items() if key not in skip and key[:1] != "_"
        }
        nbytes = EVENT_BYTES + snapshot_values(values, values, correct, name)
        groups = event_dict.get("groups")
        if groups:
            values["groups"], size = snapshot_value(groups, correct, name)
            nbytes += size
        return values, nbytes

    def _build(
        self,
        values: dict[str, Any],
        name: str,
        distinct_id: str | None,
        ctx: IdentityContext | None,
        level_name: str,
        logger_name: Any,
        span: tuple[str, str] | None,
        created: float,
    ) -> dict[str, Any] | None:
        """The event from what ``_capture`` took; runs on the flush thread."""
        capture = event_dict_capture(
            values, name, distinct_id, level_name, logger_name, span, created, self._skip
        )
        return self.client.pipeline.finish(capture, ctx)

    def _build_exception(
        self,
        values: dict[str, Any],
        name: str,
        distinct_id: str | None,
        ctx: IdentityContext | None,
        level_name: str,
        logger_name: Any,
        span: tuple[str, str] | None,
        created: float,
        entries: list[ExcEntry],
        suppressed: int,
    ) -> dict[str, Any] | None:
        """The event's ``$exception``; runs on the flush thread."""
        _, _, captured, groups, _ = event_dict_capture(
            values, name, distinct_id, level_name, logger_name, span, created, self._skip
        )
        properties = dict(captured or {})
        if name:
            properties["$log_message"] = name
        if groups:
            properties["$groups"] = groups
        boundary = Boundary(
            level=normalize_level(level_name),
            mechanism="logger",
            handled=True,
            source="structlog.processor",
        )
        return self.client.exceptions.event(
            entries, suppressed, boundary, distinct_id, properties, ctx, created
        )


def _exception_of(event_dict: MutableMapping[str, Any]) -> object:
    """The event's exception: ``exc_info`` (``True`` is the one being handled, as
    structlog reads it), else the entries of a rendered ``exception`` key; ``None``."""
    exc_info = event_dict.get("exc_info")
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            return exc_info
        if isinstance(exc_info, tuple) and len(exc_info) == 3:
            return exc_info[1] if isinstance(exc_info[1], BaseException) else None
        return None
    rendered = event_dict.get("exception")
    if rendered:
        return parse_rendered(rendered) or None
    return None


def _exception_text(event_dict: Mapping[str, Any]) -> object:
    """The event's exception for its log record: ``exc_info`` (``True``: the one being
    handled), else the traceback text of a rendered ``exception`` key; ``None``."""
    exc_info = event_dict.get("exc_info")
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        return exc_info
    rendered = event_dict.get("exception")
    return rendered if isinstance(rendered, str) else None


def event_dict_log_record(
    event_dict: Mapping[str, Any], distinct_id_key: str, logger_name: object
) -> tuple[str, dict[str, Any]] | None:
    """The body and attributes of a structlog event dict's log record (``None`` without
    an ``event``), on the logging thread: ``PostHogProcessor(logs=True)``'s, and
    ``PostHogHandler(logs=True)``'s for the event dict a ``ProcessorFormatter`` hands it.
    The distinct id from the dict, else structlog's bound context variables."""
    body = event_dict.get("event")
    if body is None:
        return None
    distinct_id = first_id(event_dict, (distinct_id_key,))
    if distinct_id is None:
        distinct_id = _bound_contextvar(distinct_id_key)
    skip = _BOOKKEEPING | {distinct_id_key, "groups"}
    exception = _exception_text(event_dict)
    attributes = event_dict_log(event_dict, skip, distinct_id, logger_name, exception)
    return (body if isinstance(body, str) else str(body)), attributes


def event_dict_log(
    values: Mapping[str, Any],
    skip: frozenset[str] | set[str],
    distinct_id: str | None,
    logger_name: object,
    exception: object,
) -> dict[str, Any]:
    """The PostHog Logs attributes of a structlog event dict: a pure function. The
    values but ``skip`` and ``_``-prefixed keys, the distinct id as ``posthogDistinctId``
    and a ``session_id`` as ``sessionId`` (LOG-14; without them ``capture_log`` takes the
    identity context's), ``logger.name``, the exception as ``exception.*``."""
    attributes = {key: value for key, value in values.items() if key not in skip and key[:1] != "_"}
    attributes.pop("groups", None)
    if distinct_id is not None:
        attributes["posthogDistinctId"] = distinct_id
    session_id = attributes.pop("session_id", None)
    if session_id not in (None, ""):
        attributes["sessionId"] = str(session_id)
    if isinstance(logger_name, str):
        attributes["logger.name"] = logger_name
    if exception is not None:
        attributes.update(exception_attributes(exception))
    return attributes


def event_dict_capture(
    values: Mapping[str, Any],
    name: str,
    distinct_id: str | None,
    level_name: str,
    logger_name: object,
    span: tuple[str, str] | None,
    created: float,
    skip: frozenset[str] | set[str] = frozenset(),
) -> CaptureFields:
    """The capture for a structlog event dict (as ``CaptureFields``), from what the
    processor took of it: a pure function. Properties: the values but ``skip`` and
    ``_``-prefixed keys, with ``$log_level``, ``$logger_name`` and the span ids;
    ``groups`` sets the groups."""
    properties = {key: value for key, value in values.items() if key not in skip and key[:1] != "_"}
    groups = values.get("groups")
    properties["$log_level"] = level_name
    if isinstance(logger_name, str):
        properties["$logger_name"] = logger_name
    if span is not None:
        properties.setdefault("$trace_id", span[0])
        properties.setdefault("$span_id", span[1])
    timestamp = datetime.fromtimestamp(created, timezone.utc)
    return name, distinct_id, properties, groups if groups else None, timestamp


def _level_number(level: int | str) -> int:
    if isinstance(level, int):
        return level
    number = _LEVELS.get(level.lower())
    if number is None:
        raise ValueError(f"level must be a logging level name or number, got {level!r}")
    return number


def _bound_contextvar(key: str) -> str | None:
    """``key`` from structlog's contextvars, for chains without ``merge_contextvars``."""
    from structlog.contextvars import get_contextvars

    return first_id(get_contextvars(), (key,))
