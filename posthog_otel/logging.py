"""``PostHogHandler``: log records that carry a distinct id become PostHog events.

``logger.info("user_signed_up", extra={"distinct_id": "u1", "plan": "pro"})`` becomes the
event ``user_signed_up`` for ``u1`` with property ``plan``.

On the logging thread the handler takes what the event needs at the moment of the call,
as ``logging.QueueHandler.prepare`` does: the message formatted once
(``record.getMessage()``, so a ``%s`` argument is read now, not later), the extras with
their values copied (``posthog_otel._snapshot``), the identity context and the active
span; it queues that compact tuple, never the ``LogRecord``. So the queue holds no
record, no ``exc_info``, traceback or frame (a ``log.exception()`` does not pin its
frames' locals while the server is unreachable), and the garbage collector has few
objects to walk. The event is built (and ``before_send`` runs) on the flush thread.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

from ._context import IdentityContext, _current
from ._exc_snapshot import Boundary, ExcEntry, entries_bytes, normalize_level
from ._exc_text import parse_traceback
from ._integration import PERSONLESS, active_span_ids, release_client, resolve_client
from ._log import thread_state
from ._logs import exception_attributes
from ._snapshot import ENTRY_BYTES, EVENT_BYTES, IMMUTABLE, Correct, snapshot_value
from ._stats import peek_count
from ._structlog_call import EVENTS, LOGS, captured_lanes
from ._structlog_call import captured as structlog_call
from .structlog import event_dict_log_record

if TYPE_CHECKING:
    from .client import Client
    from .pipeline import CaptureFields, Pipeline

__all__ = ["DEFAULT_IGNORED_LOGGERS", "PostHogHandler", "record_capture", "record_log"]

# Loggers whose records never become events: ours, the HTTP stack we upload with, the
# official SDK, and OpenTelemetry's own diagnostics. Children are ignored too.
DEFAULT_IGNORED_LOGGERS = (
    "posthog_otel",
    "posthog",
    "httpx",
    "httpcore",
    "urllib3",
    "requests",
    "backoff",
    "hpack",
    "h2",
    "opentelemetry",
)

# Attributes of every LogRecord, plus those formatters and well-known libraries add:
# never event properties.
_STANDARD = tuple(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_RECORD_ATTRIBUTES = frozenset(_STANDARD) | {
    "message",
    "asctime",
    "taskName",
    "otelSpanID",
    "otelTraceID",
    "otelTraceSampled",
    "otelServiceName",
}

_OTEL_TRACE = "opentelemetry.trace"


class PostHogHandler(logging.Handler):
    """A ``logging.Handler`` that captures records carrying a distinct id as events.

    Every argument is keyword-only and optional, so ``logging.config.dictConfig`` can
    build it (``"class": "posthog_otel.PostHogHandler"``). With no ``client`` it uses the
    shared default client configured from the environment, or its own client when
    ``api_key``/``host`` are given.

    Event name: the ``event`` extra, else the message template (``record.msg``), so
    ``logger.info("paid %s", amount)`` stays one event; the formatted message goes in
    ``$log_message``. Properties: the record's extras (not the standard attributes and
    not ``_``-prefixed ones); ``$set``/``$set_once`` keep their PostHog meaning and a
    ``groups`` extra sets the event's groups. Records without a distinct id (extra, or
    identity context) are skipped unless ``personless=True``. The stdlib record of a
    structlog call whose event (or, with ``logs=True``, log record) ``PostHogProcessor``
    captured is not sent again to that lane (see ``posthog_otel._structlog_call``); no
    other record is skipped for it.

    Error tracking: a record with an exception (``logger.exception``, ``exc_info=True``,
    or the ``exc_text`` a ``QueueHandler`` leaves) also becomes an ``$exception`` event
    (level from the record, mechanism ``logger``, ``handled``, source
    ``python.logging``) with the record's extras and message, whatever ``personless``
    says (personless without an identity); ``exceptions=False`` turns that off, and
    ``event_with_exception=False`` sends only the ``$exception`` for such records.

    PostHog Logs: with ``logs=True`` every record at or above ``logs_level`` (with or
    without a distinct id) is also sent as a log record (``client.capture_log``, see
    ``record_log``); ``level`` then gates the analytics events only, and the handler
    accepts records at the lower of the two (``setLevel`` sets the events' level).
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        level: int | str = logging.INFO,
        distinct_id_key: str = "distinct_id",
        personless: bool = False,
        ignore_loggers: Iterable[str] = (),
        exceptions: bool = True,
        event_with_exception: bool = True,
        logs: bool = False,
        logs_level: int | str = logging.INFO,
        api_key: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(level)
        self.logs = bool(logs)
        """Send records at or above ``logs_level`` to PostHog Logs too."""
        self.logs_level = _level_number(logs_level)
        self.events_level = self.level
        """Records below it become no analytics event (``level``)."""
        # ``handle`` calls this: ``emit`` alone without logs (its cost unchanged).
        self._dispatch = self._emit_with_logs if self.logs else self.emit
        self.setLevel(self.level)
        self.exceptions = exceptions
        """Send records carrying an exception as ``$exception`` events too."""
        self.event_with_exception = event_with_exception
        """Also send the plain event for a record sent as an ``$exception``."""
        self.client, self._owns_client = resolve_client(client, api_key, host)
        self.follows_default_client = not self._owns_client
        """Whether ``set_default_client`` points this handler at a new default client."""
        self.distinct_id_key = distinct_id_key
        self.personless = personless
        names = (*DEFAULT_IGNORED_LOGGERS, *ignore_loggers)
        self._ignored_names = frozenset(names)
        self._ignored_prefixes = tuple(name + "." for name in names)
        self._logger_allowed: dict[str, bool] = {}
        # One bound method for every queued item, not a new one per item: one object
        # fewer for each queued event to allocate and for the garbage collector to walk.
        self._builder = self._build
        self._exception_builder = self._build_exception
        self._skipped = itertools.count()

    @property
    def skipped(self) -> int:
        """Records not captured because they had no distinct id."""
        return peek_count(self._skipped)

    def handle(self, record: logging.LogRecord) -> Any:
        """``logging.Handler.handle`` without the handler's I/O lock.

        The lock serializes ``emit`` for handlers that write to a stream; this one only
        appends to the client's queue, which has its own lock, and keeps no state of its
        own that a concurrent record could corrupt (``skipped`` is an atomic counter). Two
        Python calls and an ``RLock`` round trip less per record, on the logging thread.
        """
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may replace it
            record = rv
        if rv:
            self._dispatch(record)
        return rv

    def setLevel(self, level: int | str) -> None:
        """Set the analytics events' level; with ``logs=True`` the handler accepts
        records down to ``logs_level`` as well (``dictConfig`` calls this)."""
        super().setLevel(level)
        self.events_level = self.level
        if getattr(self, "logs", False):
            self.level = min(self.level, self.logs_level)

    def _emit_with_logs(self, record: logging.LogRecord) -> None:
        """``logs=True``: the log record at or above ``logs_level``, then the events
        (``emit``) at or above the events' level."""
        levelno = record.levelno
        message = self._ship_log(record) if levelno >= self.logs_level else None
        if levelno >= self.events_level:
            self.emit(record, message)  # formatted once (and a bad format counted once)

    def _ship_log(self, record: logging.LogRecord) -> str | None:
        """Send ``record`` to PostHog Logs: formatted here, on the logging thread, with
        its extras, identity, span ids (``capture_log``) and exception text; the
        formatted message (``None`` if the record was not shipped)."""
        try:
            name = record.name
            allowed = self._logger_allowed.get(name)
            if allowed is None:
                allowed = self._allow_logger(name)
            if not allowed or thread_state.internal:
                return None
            if structlog_call.get() is not None and captured_lanes() & LOGS:
                return None  # PostHogProcessor(logs=True) sent this structlog call's record
            client = self.client
            if type(record.msg) is dict:  # structlog's ProcessorFormatter: the event dict
                log = event_dict_log_record(record.msg, self.distinct_id_key, record.name)
                if log is not None:
                    client.capture_log(log[0], record.levelno, log[1])
                return None
            try:
                message = record.getMessage()
            except Exception:
                message = self._unformattable(client.pipeline, record)
            exception = (
                _exception_of(record)
                if record.exc_info or record.exc_text or record.levelno >= _WARNING
                else None
            )
            attributes = record_log(record.__dict__, exception, self.distinct_id_key)
            client.capture_log(message, record.levelno, attributes)
            return message
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return None

    def emit(self, record: logging.LogRecord, message: str | None = None) -> None:
        """Take the values of the moment (message, extras, identity, span) and queue them
        as a compact tuple; the event is built from it on the flush thread. ``message``:
        the record already formatted (by the logs path), else formatted here."""
        try:
            name = record.name
            allowed = self._logger_allowed.get(name)
            if allowed is None:
                allowed = self._allow_logger(name)
            if not allowed or thread_state.internal:
                return
            msg = record.msg
            if type(msg) is dict:
                return  # structlog's ProcessorFormatter: PostHogProcessor sends those
            if structlog_call.get() is not None and captured_lanes() & EVENTS:
                return  # PostHogProcessor sent this structlog call's event
            ctx = _current.get()
            attributes = record.__dict__
            exception = (
                _exception_of(record)
                if self.exceptions
                and (record.exc_info or record.exc_text or record.levelno >= _WARNING)
                else None  # an info record without exception: no call on the hot path
            )
            send_event = exception is None or self.event_with_exception
            event_ctx = ctx
            if attributes.get(self.distinct_id_key) in (None, "") and (
                ctx is None or not ctx.distinct_id
            ):
                if not self.personless:
                    send_event = False
                event_ctx = ctx or PERSONLESS
            if not send_event and exception is None:
                next(self._skipped)
                return
            pipeline = self.client.pipeline
            if message is None:
                try:
                    message = record.getMessage()
                except Exception:  # bad %-args, or an argument whose __str__ raises
                    message = self._unformattable(pipeline, record)
            # The record's attributes as they are now, without what must not be kept:
            # the %-arguments (formatted above) and the exception with its traceback
            # (``exc_text`` and ``stack_info`` are strings: they hold no frame).
            attrs = attributes.copy()
            attrs["args"] = attrs["exc_info"] = None
            if type(msg) is not str:
                attrs["msg"] = self._text(msg)
            # The extras follow the standard attributes (see _snapshot_extras): when
            # their values are scalars nothing needs copying. The size estimate counts
            # the message and a fixed overhead; the extras' strings are measured only
            # on the slow path (the check stays one lookup per extra).
            nbytes = EVENT_BYTES + len(message)
            for value in islice(attrs.values(), _N_STANDARD, None):
                if type(value) not in IMMUTABLE:
                    nbytes += _snapshot_extras(attrs, pipeline.correct)
                    break
            span = active_span_ids() if _OTEL_TRACE in sys.modules else None
            if send_event:
                pipeline.defer((self._builder, attrs, message, event_ctx, span), nbytes)
            if exception is not None:
                self._defer_exception(exception, attrs, message, ctx, event_ctx, span, nbytes)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    @staticmethod
    def _text(msg: object) -> str:
        """``str(msg)`` for a message that is not a string (an exception, say)."""
        try:
            return str(msg)
        except Exception:
            return f"<unprintable {type(msg).__name__}>"

    @classmethod
    def _unformattable(cls, pipeline: Pipeline, record: logging.LogRecord) -> str:
        """The message when ``record.getMessage()`` raised: the template, counted."""
        msg = record.msg
        template = msg if type(msg) is str else cls._text(msg)
        pipeline.correct(
            "unformattable_message",
            f"log message {template!r} could not be formatted with its arguments; "
            "sent with the unformatted template",
        )
        return template

    def _allow_logger(self, name: str) -> bool:
        allowed = name not in self._ignored_names and not name.startswith(self._ignored_prefixes)
        if len(self._logger_allowed) < 10_000:  # logger names are few; stay bounded anyway
            self._logger_allowed[name] = allowed
        return allowed

    def _build(
        self,
        attrs: dict[str, Any],
        message: str,
        ctx: IdentityContext | None,
        span: tuple[str, str] | None,
    ) -> dict[str, Any] | None:
        """The event from what ``emit`` took; runs on the flush thread."""
        capture = record_capture(attrs, message, span, self.distinct_id_key)
        return self.client.pipeline.finish(capture, ctx)

    def _defer_exception(
        self,
        exception: object,
        attrs: dict[str, Any],
        message: str,
        ctx: IdentityContext | None,
        event_ctx: IdentityContext | None,
        span: tuple[str, str] | None,
        nbytes: int,
    ) -> None:
        """Queue the record's ``$exception``: the traceback as plain data now (no file
        read), the event on the flush thread; refused and storm-deduplicated records
        are counted by the client."""
        did = attrs.get(self.distinct_id_key)
        key = None if did in (None, "") else str(did)
        intake = self.client.exceptions
        if isinstance(exception, str):
            taken = intake.take_entries(None, parse_traceback(exception), key, ctx)
        else:
            taken = intake.take(exception, key, ctx)
        if taken is not None:
            entries, suppressed = taken
            item = (self._exception_builder, attrs, message, event_ctx, span, entries, suppressed)
            self.client.pipeline.defer(item, nbytes + entries_bytes(entries))

    def _build_exception(
        self,
        attrs: dict[str, Any],
        message: str,
        ctx: IdentityContext | None,
        span: tuple[str, str] | None,
        entries: list[ExcEntry],
        suppressed: int,
    ) -> dict[str, Any] | None:
        """The record's ``$exception`` event; runs on the flush thread."""
        _, distinct_id, captured, groups, _ = record_capture(
            attrs, message, span, self.distinct_id_key
        )
        properties = dict(captured or {})
        properties["$log_message"] = message
        if groups:
            properties["$groups"] = groups
        boundary = Boundary(
            level=normalize_level(attrs["levelno"]),
            mechanism="logger",
            handled=True,
            source="python.logging",
        )
        return self.client.exceptions.event(
            entries,
            suppressed,
            boundary,
            distinct_id,  # type: ignore[arg-type]
            properties,
            ctx,
            attrs["created"],
        )

    def flush(self) -> None:
        """Deliver what is queued, within the client's ``shutdown_timeout``."""
        self.client.flush(self.client.shutdown_timeout)

    def close(self) -> None:
        """Close a client this handler created; flush a shared one."""
        try:
            release_client(self.client, self._owns_client)
        finally:
            super().close()


def record_capture(
    attrs: dict[str, Any], message: str, span: tuple[str, str] | None, distinct_id_key: str
) -> CaptureFields:
    """The capture for a log record (as ``CaptureFields``), from what ``emit`` took of it
    (a copy of its attributes, the formatted message, the active span ids): a pure
    function.

    Event name: the ``event`` extra, else the message template. Properties: the extras
    (not the standard attributes, not ``_``-prefixed ones), ``$log_level``,
    ``$logger_name``, ``$log_message`` when it differs from the name, and the span ids."""
    keys = list(attrs)
    if len(keys) >= _N_STANDARD and keys[_N_STANDARD - 1] == _STANDARD[-1]:
        keys = keys[_N_STANDARD:]  # the extras follow the standard attributes (see emit)
    properties = {
        key: attrs[key] for key in keys if key not in _RECORD_ATTRIBUTES and key[:1] != "_"
    }
    template = attrs["msg"]
    event = properties.pop("event", None)
    if not isinstance(event, str) or not event:
        event = template
    distinct_id = properties.pop(distinct_id_key, None)
    groups = properties.pop("groups", None)
    level = attrs["levelname"]
    properties["$log_level"] = _LOWER_LEVELS.get(level) or level.lower()
    properties["$logger_name"] = attrs["name"]
    if message != event:
        properties["$log_message"] = message
    if span is not None:
        properties.setdefault("$trace_id", span[0])
        properties.setdefault("$span_id", span[1])
    # epoch seconds, formatted when encoded
    return event, distinct_id, properties, groups, attrs["created"]


def record_log(attrs: dict[str, Any], exception: object, distinct_id_key: str) -> dict[str, Any]:
    """The PostHog Logs attributes of a log record (its ``__dict__``): a pure function.

    The extras (not the standard attributes, not ``_``-prefixed ones), the distinct id
    extra as ``posthogDistinctId`` and a ``session_id`` extra as ``sessionId`` (LOG-14;
    without them ``capture_log`` takes the identity context's), ``logger.name``, the
    ``code.*`` location and the exception as ``exception.*`` (OpenTelemetry's names)."""
    keys = list(attrs)
    if len(keys) >= _N_STANDARD and keys[_N_STANDARD - 1] == _STANDARD[-1]:
        keys = keys[_N_STANDARD:]  # the extras follow the standard attributes (see emit)
    attributes = {
        key: attrs[key] for key in keys if key not in _RECORD_ATTRIBUTES and key[:1] != "_"
    }
    distinct_id = attributes.pop(distinct_id_key, None)
    if distinct_id not in (None, ""):
        attributes["posthogDistinctId"] = str(distinct_id)
    session_id = attributes.pop("session_id", None)
    if session_id not in (None, ""):
        attributes["sessionId"] = str(session_id)
    attributes["logger.name"] = attrs["name"]
    attributes["code.filepath"] = attrs["pathname"]
    attributes["code.function"] = attrs["funcName"]
    attributes["code.lineno"] = attrs["lineno"]
    if exception is not None:
        attributes.update(exception_attributes(exception))
    return attributes


def _level_number(level: int | str) -> int:
    """A ``logging`` level (number or registered name) as its number."""
    number = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(number, int) or isinstance(number, bool):
        raise ValueError(f"logs_level must be a logging level name or number, got {level!r}")
    return number


def _exception_of(record: logging.LogRecord) -> object:
    """The record's exception: its ``exc_info`` tuple, else the traceback text in its
    ``exc_text`` or, behind a ``QueueHandler`` (whose ``prepare`` formats the record
    and drops ``exc_info``), in its message; ``None`` when it has none."""
    exc_info = record.exc_info
    if exc_info:
        return exc_info if isinstance(exc_info, tuple) and exc_info[1] is not None else None
    texts = (record.exc_text, record.msg) if record.levelno >= _WARNING else (record.exc_text,)
    for text in texts:
        if isinstance(text, str):
            start = text.find(_TRACEBACK)
            if start >= 0 and (start == 0 or text[start - 1] == "\n"):
                return text[start:]
    return None


_TRACEBACK = "Traceback (most recent call last):"
# Below it, a record's message is not searched for a traceback (a QueueHandler's).
_WARNING = logging.WARNING


def _snapshot_extras(attrs: dict[str, Any], correct: Correct) -> int:
    """Snapshot, in ``attrs`` (a copy of a record's ``__dict__``), the values of the
    extras that could change later (``posthog_otel._snapshot``); their estimated encoded
    size.

    ``emit`` calls this only when an extra is not a scalar: ``makeRecord`` adds extras
    after the attributes ``LogRecord.__init__`` sets, and a dict keeps insertion order,
    so ``emit`` looks only at the values that follow the standard attributes. (A record
    that lost a standard attribute before reaching the handler would have its first
    extra looked at here only if another one is not a scalar: nothing is lost, at worst
    that value is shared.) ``_``-prefixed attributes are never sent: those that are not
    scalars are removed rather than kept."""
    size = 0
    nested: list[str] = []
    unsent: list[str] = []
    for key, value in attrs.items():
        if key in _RECORD_ATTRIBUTES:
            continue
        if type(value) not in IMMUTABLE:
            (unsent if key[:1] == "_" else nested).append(key)
        elif key[:1] != "_":
            size += ENTRY_BYTES + (len(value) if type(value) is str else 0)
    for key in unsent:  # never sent: not kept either
        del attrs[key]
    for key in nested:
        attrs[key], nbytes = snapshot_value(attrs[key], correct, attrs["msg"])
        size += ENTRY_BYTES + nbytes
    return size


_N_STANDARD = len(_STANDARD)
# ``$log_level`` of the standard level names, without a ``str.lower()`` per event.
_LOWER_LEVELS = {
    name: name.lower() for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NOTSET")
}
