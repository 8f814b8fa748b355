"""``PostHogHandler``: log records that carry a distinct id become PostHog events.

``logger.info("user_signed_up", extra={"distinct_id": "u1", "plan": "pro"})`` becomes the
event ``user_signed_up`` for ``u1`` with property ``plan``. On the logging thread the
handler only snapshots the identity context and the active span and appends the record
to the client's queue; the event is built (and ``before_send`` runs) on the flush thread.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ._context import IdentityContext, _current
from ._integration import PERSONLESS, active_span_ids, resolve_client
from ._log import thread_state
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

_OTEL_TRACE = "opentelemetry.trace"

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
        self._logger_allowed: dict[str, bool] = {}
        self.skipped = 0
        """Records not captured because they had no distinct id."""

    def emit(self, record: logging.LogRecord) -> None:
        """Snapshot identity and span, append to the queue; nothing else on this thread."""
        try:
            allowed = self._logger_allowed.get(record.name)
            if allowed is None:
                allowed = self._allow_logger(record.name)
            if not allowed or thread_state.internal:
                return
            if type(record.msg) is dict:
                return  # structlog's ProcessorFormatter: PostHogProcessor sends those
            captured = structlog_captured.get()
            if captured is not None:
                structlog_captured.set(None)
                if captured == record.msg:
                    return  # PostHogProcessor already sent this one
            ctx = _current.get()
            if record.__dict__.get(self.distinct_id_key) in (None, "") and (
                ctx is None or not ctx.distinct_id
            ):
                if not self.personless:
                    self.skipped += 1
                    return
                ctx = ctx or PERSONLESS
            span = active_span_ids() if _OTEL_TRACE in sys.modules else None
            client = self.client
            if client._accepting:
                client._exporter_submit((self._build, record, ctx, span))
            else:
                client._refuse()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _allow_logger(self, name: str) -> bool:
        allowed = name not in self._ignored_names and not name.startswith(self._ignored_prefixes)
        if len(self._logger_allowed) < 10_000:  # logger names are few; stay bounded anyway
            self._logger_allowed[name] = allowed
        return allowed

    def _build(
        self,
        record: logging.LogRecord,
        ctx: IdentityContext | None,
        span: tuple[str, str] | None,
    ) -> dict[str, Any] | None:
        """The event for ``record``; runs on the flush thread."""
        properties = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        }
        event = properties.pop("event", None)
        template = record.msg if isinstance(record.msg, str) else str(record.msg)
        if not isinstance(event, str) or not event:
            event = template
        distinct_id = properties.pop(self.distinct_id_key, None)
        groups = properties.pop("groups", None)
        properties["$log_level"] = record.levelname.lower()
        properties["$logger_name"] = record.name
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the template
            message = template
        if message != event:
            properties["$log_message"] = message
        if span is not None:
            properties.setdefault("$trace_id", span[0])
            properties.setdefault("$span_id", span[1])
        return self.client._deferred_capture(
            Capture(
                event,
                distinct_id,
                properties,
                groups=groups,
                timestamp=datetime.fromtimestamp(record.created, timezone.utc),
            ),
            ctx,
        )

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
