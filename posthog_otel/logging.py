"""``PostHogHandler``: log records that carry a distinct id become PostHog events.

``logger.info("user_signed_up", extra={"distinct_id": "u1", "plan": "pro"})`` becomes the
event ``user_signed_up`` for ``u1`` with property ``plan``. On the logging thread the
handler only snapshots the identity context and the active span and appends the record
to the client's queue; the event is built (and ``before_send`` runs) on the flush thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._context import IdentityContext, _current
from ._integration import PERSONLESS, active_span_ids, resolve_client
from ._log import is_internal_thread
from .messages import Capture

if TYPE_CHECKING:
    from .client import Client

__all__ = ["DEFAULT_IGNORED_LOGGERS", "PostHogHandler"]

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
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "otelSpanID",
    "otelTraceID",
    "otelTraceSampled",
    "otelServiceName",
}

# Set by PostHogProcessor to the name of the structlog event it captured, so that the
# same event arriving here through structlog's stdlib integration is not sent twice.
structlog_captured: ContextVar[str | None] = ContextVar("posthog_otel_structlog", default=None)


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
    identity context) are skipped unless ``personless=True``.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        level: int | str = logging.INFO,
        distinct_id_key: str = "distinct_id",
        personless: bool = False,
        ignore_loggers: Iterable[str] = (),
        api_key: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(level)
        self.client, self._owns_client = resolve_client(client, api_key, host)
        self.distinct_id_key = distinct_id_key
        self.personless = personless
        names = (*DEFAULT_IGNORED_LOGGERS, *ignore_loggers)
        self._ignored_names = frozenset(names)
        self._ignored_prefixes = tuple(name + "." for name in names)
        self.skipped = 0
        """Records not captured because they had no distinct id."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name
            if (
                name in self._ignored_names
                or name.startswith(self._ignored_prefixes)
                or is_internal_thread()
            ):
                return
            if type(record.msg) is dict or self._captured_by_structlog(record):
                return  # structlog's ProcessorFormatter / PostHogProcessor already sent it
            ctx = _current.get()
            if record.__dict__.get(self.distinct_id_key) in (None, "") and (
                ctx is None or not ctx.distinct_id
            ):
                if not self.personless:
                    self.skipped += 1
                    return
                ctx = ctx or PERSONLESS
            self.client._submit_deferred(_DeferredRecord(self, record, ctx, active_span_ids()))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    @staticmethod
    def _captured_by_structlog(record: logging.LogRecord) -> bool:
        captured = structlog_captured.get()
        if captured is None:
            return False
        structlog_captured.set(None)
        return captured == record.msg

    def flush(self) -> None:
        """Deliver what is queued, within the client's ``shutdown_timeout``."""
        self.client.flush(self.client.shutdown_timeout)

    def close(self) -> None:
        """Close a client this handler created; flush a shared one."""
        try:
            if self._owns_client:
                self.client.close(self.client.shutdown_timeout)
            else:
                self.client.flush(self.client.shutdown_timeout)
        finally:
            super().close()


class _DeferredRecord:
    """A log record waiting to become an event on the flush thread."""

    __slots__ = ("ctx", "handler", "record", "span")

    def __init__(
        self,
        handler: PostHogHandler,
        record: logging.LogRecord,
        ctx: IdentityContext | None,
        span: tuple[str, str] | None,
    ) -> None:
        self.handler = handler
        self.record = record
        self.ctx = ctx
        self.span = span

    def materialize(self) -> dict[str, Any] | None:
        record, handler = self.record, self.handler
        properties = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        }
        event = properties.pop("event", None)
        template = record.msg if isinstance(record.msg, str) else str(record.msg)
        if not isinstance(event, str) or not event:
            event = template
        distinct_id = properties.pop(handler.distinct_id_key, None)
        groups = properties.pop("groups", None)
        properties["$log_level"] = record.levelname.lower()
        properties["$logger_name"] = record.name
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the template
            message = template
        if message != event:
            properties["$log_message"] = message
        if self.span is not None:
            properties.setdefault("$trace_id", self.span[0])
            properties.setdefault("$span_id", self.span[1])
        return handler.client._deferred_capture(
            Capture(
                event,
                distinct_id,
                properties,
                groups=groups,
                timestamp=datetime.fromtimestamp(record.created, timezone.utc),
            ),
            self.ctx,
        )
