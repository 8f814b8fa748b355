"""The PostHog client: wiring of the caller-side event path and the flag reads over the
batching exporter, plus one-line delegates.

The event path, in data-flow order: ``_ids`` → ``_assembly`` (message + identity context
→ wire event) → ``_before_send`` → ``pipeline`` (intake: accept or refuse, submit,
deferred builds) → ``export/`` (queue, batch, lane, retry, transport). Flag reads go
through ``_flag_reads`` to ``flags/``; flush, close and exit through ``_lifecycle``;
configuration is built once by ``_options``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _autocapture
from ._ai import AiCapture
from ._assembly import LIB_NAME, EventAssembler
from ._async_flag_reads import AsyncFlagMethods
from ._before_send import BeforeSendChain
from ._config import mask_key
from ._context import _current
from ._exc_intake import ExceptionIntake
from ._flag_reads import FlagMethods, FlagReads
from ._fork import fork_safe_lock, import_now
from ._lifecycle import Lifecycle, exit_hook_starter, flush_on_exit
from ._log import enable_debug
from ._logs import Logger, build_log_capture
from ._logs_config import LogsConfig
from ._options import BeforeSend, ClientConfig, OnError, client_config
from ._span_methods import SpanMethods
from ._spans import Tracer
from ._stats import ClientStats, StatsRecorder
from ._traces import TraceCapture, build_trace_capture
from ._traces_config import TracesConfig
from ._version import __version__
from .export import (
    DEFAULT_SPOOL_BYTES,
    SPOOL_IMPORTS,
    THREAD_IMPORTS,
    BatchExporter,
    Clock,
    HttpTransport,
    SpoolingExporter,
    V0Lane,
    V1Lane,
    spool_lane,
)
from .messages import Alias, Capture, GroupIdentify, Identify, Message
from .pipeline import Pipeline

if TYPE_CHECKING:
    import httpx

    from .flags import FlagsService

__all__ = ["Client", "default_client", "flush_on_exit"]

# /flags decides from the User-Agent whether the caller is a server runtime; a name it
# does not know hides server-only flags. We lead with the official SDK's token, whose
# v0 wire behaviour we reproduce, and name ourselves after it.
WIRE_COMPAT_VERSION = "7.91.1"
USER_AGENT = f"posthog-python/{WIRE_COMPAT_VERSION} {LIB_NAME}/{__version__}"


class Client(FlagMethods, AsyncFlagMethods, SpanMethods):
    """A PostHog client with a batching exporter; every argument (and the environment
    variable behind it) is listed in ``docs/configuration.md``.

    ``enqueue`` (and the conveniences built on it) never raise and never block on the
    network: they assemble the event, run ``before_send`` and append it to a bounded
    queue that a background thread sends in gzip'd batches with retries. The flag
    methods (``get_feature_flag``, ...) come from ``FlagMethods``, their async twins
    (``aget_feature_flag``, ...) from ``AsyncFlagMethods``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str | None = None,
        secret_key: str | None = None,
        personal_api_key: str | None = None,
        flush_at: int = 100,
        flush_interval: float = 5.0,
        max_queue_size: int = 10_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_batch_size: int = 1000,
        max_batch_bytes: int = 5 * 1024 * 1024,
        gzip: bool = True,
        timeout: float = 10.0,
        max_retries: int = 3,
        sync_mode: bool = False,
        disabled: bool = False,
        debug: bool = False,
        before_send: BeforeSend | Sequence[BeforeSend] | None = None,
        on_error: OnError | None = None,
        super_properties: Mapping[str, Any] | None = None,
        disable_geoip: bool = True,
        historical_migration: bool = False,
        feature_flags_poll_interval: float = 30.0,
        feature_flags_request_timeout: float = 3.0,
        feature_flags_request_max_retries: int = 1,
        feature_flags_initial_load_timeout: float = 1.0,
        shutdown_timeout: float = 3.0,
        flush_on_sigterm: bool | None = None,
        max_retry_cycles: int = 8,
        http_client: httpx.Client | None = None,
        flag_definition_cache_provider: object | None = None,
        flag_result_cache_ttl: float | None = None,
        preload_feature_flags: bool | None = None,
        enable_exception_autocapture: bool = False,
        in_app_include: Sequence[str] = (),
        in_app_exclude: Sequence[str] = (),
        logs: LogsConfig | None = None,
        traces: TracesConfig | bool | None = None,
        capture_mode: str | None = None,
        spool_path: str | os.PathLike[str] | None = None,
        max_spool_bytes: int = DEFAULT_SPOOL_BYTES,
        _clock: Clock | None = None,
        _exit_hook: bool = True,
    ) -> None:
        options = dict(locals())  # the arguments, by name: validated in ``_options``
        for name in ("self", "api_key", "_clock", "_exit_hook"):
            del options[name]
        self.config: ClientConfig = client_config(api_key, **options)
        """The validated configuration (frozen)."""
        config = self.config
        if config.debug:
            enable_debug()
        stats = self._stats = StatsRecorder()
        # Every lane's thread, when it starts, installs the exit flush (not for an owner
        # that closes the client itself: the span exporter's).
        on_thread_start = exit_hook_starter(config.flush_on_sigterm) if _exit_hook else None
        self._transport = HttpTransport(
            config.transport_host, user_agent=USER_AGENT, http_client=config.http_client
        )
        lane = (V1Lane if config.capture_mode == "v1" else V0Lane)(
            config.api_key,
            gzip=config.gzip,
            historical_migration=config.historical_migration,
            stats=stats,
        )
        spool: dict[str, Any] = {}
        if config.spool_path and not config.disabled:  # README, "Durable delivery"
            import_now(*SPOOL_IMPORTS)
            spool = {
                "spool_path": config.spool_path,
                "spool_lane": spool_lane(
                    config.capture_mode,
                    config.transport_host,
                    config.api_key,
                    historical=config.historical_migration,
                ),
                "max_spool_bytes": config.max_spool_bytes,
            }
        self._exporter = (SpoolingExporter if spool else BatchExporter)(
            lane,
            self._transport,
            config.delivery,
            stats=stats,
            clock=_clock,
            on_error=config.on_error,
            on_thread_start=on_thread_start,
            **spool,
        )
        if not config.disabled:  # what our threads use is made here, not where forks happen
            import_now(*THREAD_IMPORTS)
            self._transport.prepare()
        self._flag_reads = FlagReads(config, self._transport, stats, _clock, self._emit_flag_event)
        assembler = EventAssembler(config, stats, self._flag_reads.for_event)
        self.pipeline = Pipeline(
            assembler,
            BeforeSendChain(config.before_send, stats),
            self._exporter,
            self._flag_reads,
            stats,
            disabled=config.disabled,
        )
        """The intake every event goes through: the seam for integrations."""
        self.pipeline.on_producer = on_thread_start
        self.exceptions = ExceptionIntake(
            self.pipeline, config.exceptions, time.monotonic if _clock is None else _clock.monotonic
        )
        """Error tracking's intake (``$exception`` events): the seam for integrations."""
        if config.exceptions.autocapture and not config.disabled:
            _autocapture.register(self.exceptions, self._flush_at_crash)
        self.traces: TraceCapture = build_trace_capture(
            config,
            user_agent=USER_AGENT,
            opted_out=lambda: self.pipeline.opted_out,
            clock=_clock,
            on_thread_start=on_thread_start,
        )
        """PostHog Traces' lane (``submit(span)``): the seam of the span API and the
        OpenTelemetry exporters."""
        self._tracer = Tracer(
            config.traces,
            self.traces.submit,
            self.traces.drop,
            enabled=self.traces.enabled,
            opted_out=lambda: self.pipeline.opted_out,
        )
        self._logs = build_log_capture(
            config,
            user_agent=USER_AGENT,
            opted_out=lambda: self.pipeline.opted_out,
            clock=_clock,
            active_ids=self._tracer.active_ids,
            on_thread_start=on_thread_start,
        )
        self._ai = AiCapture(
            config,
            self._flag_reads,
            self.pipeline,
            user_agent=USER_AGENT,
            clock=_clock,
            on_thread_start=on_thread_start,
        )
        self.logger = Logger(self._logs)
        """PostHog Logs by level: ``client.logger.info("ready", {"region": "us"})``."""
        self._lifecycle = Lifecycle(
            self.pipeline,
            self._exporter,
            self._flag_reads,
            self._logs,
            self._ai,
            self.traces,
            shutdown_timeout=config.shutdown_timeout,
        )
        if _exit_hook:  # an owner that closes the client itself (the span exporter) opts out
            self._lifecycle.register()

    def __repr__(self) -> str:
        config = self.config
        return (
            f"Client(host={config.masked_host!r}, api_key={mask_key(config.api_key)!r}, "
            f"disabled={config.disabled})"
        )

    @property
    def host(self) -> str:
        """The PostHog host events go to (without any credentials it was given with)."""
        return self.config.host

    @property
    def shutdown_timeout(self) -> float:
        """Seconds ``close()`` (and the exit flush) may take by default."""
        return self.config.shutdown_timeout

    @property
    def disabled(self) -> bool:
        """True when the client drops everything (no API key, or ``disabled=True``)."""
        return self.config.disabled

    def opt_out(self) -> None:
        """Stop capturing (in memory, at runtime): ``enqueue`` returns ``None``."""
        self.pipeline.set_state(opted_out=True)

    def opt_in(self) -> None:
        """Resume capturing after ``opt_out()``."""
        self.pipeline.set_state(opted_out=False)

    @property
    def is_opted_out(self) -> bool:
        return self.pipeline.opted_out

    @property
    def stats(self) -> ClientStats:
        """A snapshot of queue depth and delivery counters. Events waiting in the flags
        worker for ``/flags`` count as ``queued`` (and ``enqueued``); ``stats.logs``: the
        logs lane's; ``stats.ai``: the AI lane's (``capture_ai``); ``stats.traces``: the
        traces lane's."""
        return self._lifecycle.stats(self._stats)

    @property
    def flags(self) -> FlagsService:
        """The flag service (built on first use): a seam for integrations such as the
        OpenFeature provider."""
        return self._flag_reads.service

    def enqueue(self, message: Message) -> str | None:
        """Queue ``message`` for delivery; its uuid, or ``None`` if it was dropped
        (every drop is counted in ``stats.dropped``). Never raises, never blocks."""
        return self.pipeline.enqueue(message)

    def capture(
        self,
        event: str,
        distinct_id: object = None,
        properties: Mapping[str, Any] | None = None,
        *,
        groups: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        uuid: Any = None,
        send_feature_flags: bool = False,
        flags: object | None = None,
        disable_geoip: bool | None = None,
    ) -> str | None:
        """Capture an event; returns its uuid or ``None`` if dropped."""
        fields = (groups, timestamp, uuid, send_feature_flags, flags, disable_geoip)
        return self.pipeline.enqueue(Capture(event, distinct_id, properties, *fields))

    def capture_ai(
        self,
        event: str,
        distinct_id: object = None,
        properties: Mapping[str, Any] | None = None,
        *,
        groups: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        uuid: Any = None,
        send_feature_flags: bool = False,
        flags: object | None = None,
        disable_geoip: bool | None = None,
    ) -> str | None:
        """``capture`` for LLM analytics (``$ai_generation``, ...): the same arguments and
        admission, sent on the AI route (README, "LLM analytics"); counted in
        ``stats.ai``."""
        fields = (groups, timestamp, uuid, send_feature_flags, flags, disable_geoip)
        return self._ai.capture(Capture(event, distinct_id, properties, *fields))

    def identify(
        self,
        distinct_id: object,
        properties: Mapping[str, Any] | None = None,
        set_once: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Send ``$identify`` setting person ``properties`` (and ``set_once`` ones)."""
        return self.pipeline.enqueue(Identify(distinct_id, properties, set_once))

    def set(self, distinct_id: object, properties: Mapping[str, Any]) -> str | None:
        """Set person properties (a ``$set`` event); empty properties send nothing."""
        return self.pipeline.person(Identify(distinct_id, properties), "$set")

    def set_once(self, distinct_id: object, properties: Mapping[str, Any]) -> str | None:
        """Set person properties only where not yet set (a ``$set_once`` event)."""
        return self.pipeline.person(Identify(distinct_id, set_once=properties), "$set_once")

    def alias(self, previous_id: object, distinct_id: object) -> str | None:
        """Make ``distinct_id`` (new) an alias of the person known as ``previous_id``."""
        return self.pipeline.enqueue(Alias(distinct_id=previous_id, alias=distinct_id))

    def group_identify(
        self,
        group_type: str,
        group_key: object,
        properties: Mapping[str, Any] | None = None,
        distinct_id: object = None,
    ) -> str | None:
        """Create or update a group (``$groupidentify``)."""
        return self.pipeline.enqueue(GroupIdentify(group_type, group_key, properties, distinct_id))

    def capture_exception(
        self,
        exception: object = None,
        distinct_id: object = None,
        properties: Mapping[str, Any] | None = None,
        *,
        level: str | None = None,
        handled: bool = True,
        groups: Mapping[str, Any] | None = None,
        mechanism: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Send an ``$exception`` event (error tracking); returns its uuid, or ``None``
        if it was dropped (counted). ``exception``: an exception, ``sys.exc_info()``, or
        any value (sent with a normalized message); omitted, the exception being
        handled. Without a distinct id (argument or identity context) the event is
        personless. ``level`` (default ``error``) and ``mechanism`` (``type``,
        ``handled``, ``synthetic``) override the defaults when valid. Never raises; the
        traceback is read here, source files on the flush thread (``before_send`` runs
        there too)."""
        return self.exceptions.capture(
            exception,
            distinct_id,
            properties,
            level=level,
            handled=handled,
            groups=groups,
            mechanism=mechanism,
        )

    def capture_log(
        self,
        body: str,
        level: str | int | None = None,
        attributes: Mapping[str, Any] | None = None,
        trace_id: str | int | None = None,
        span_id: str | int | None = None,
        trace_flags: int | None = None,
        *,
        time_ns: int | None = None,
        severity_number: int | None = None,
    ) -> bool:
        """Send a log record to PostHog Logs (README, "Logs"); ``False`` if it was dropped
        (counted in ``stats.logs``). Never raises, never blocks on the network.
        ``time_ns``/``severity_number``: a record's own values (``otel_logs``)."""
        return self._logs.capture(
            body,
            level,
            attributes,
            trace_id,
            span_id,
            trace_flags,
            time_ns=time_ns,
            severity_number=severity_number,
        )

    def _emit_flag_event(self, message: Capture, keep: frozenset[str] | None) -> object:
        """A ``$feature_flag_called`` event from the flag service (``keep``: the
        properties of its minimal form)."""
        if keep is None:
            return self.pipeline.enqueue(message)
        return self.pipeline.capture(message, _current.get(), keep)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued before the call through one delivery cycle (with
        retries); ``True`` if all of it was delivered. ``timeout=0`` does not wait; the
        flags worker and the exporter share the one ``timeout``."""
        return self._lifecycle.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop; later ``enqueue`` calls return ``None``. Idempotent.

        Returns within ``timeout`` seconds (``None``: ``shutdown_timeout``), one deadline
        shared by the flags worker, the flag poller and the exporter; what could not be
        delivered by then is counted as dropped (``shutdown``)."""
        _autocapture.unregister(self.exceptions)
        self._tracer.close()  # spans still live are discarded (counted), TRC-24
        return self._lifecycle.close(timeout)

    shutdown = close

    def _flush_at_crash(self) -> None:
        """The flush before a process ends of an uncaught exception (autocapture)."""
        self.flush(self.config.shutdown_timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(self.config.shutdown_timeout)


# ---------------------------------------------------------------------- the default client

_default_client: Client | None = None
_default_owned = False  # True when default_client() built it (then it is ours to close)
_default_lock = fork_safe_lock()


def default_client() -> Client:
    """The shared client the integrations use when given none, configured from the
    environment (``POSTHOG_API_KEY``, ``POSTHOG_HOST``, ...) and flushed at exit."""
    global _default_client, _default_owned
    with _default_lock:
        if _default_client is None:
            _default_client = Client()
            _default_owned = True
        return _default_client


def swap_default_client(client: Client | None, *, owned: bool) -> tuple[Client | None, bool]:
    """Install ``client`` as the default; the previous one and whether we built it."""
    global _default_client, _default_owned
    with _default_lock:
        previous = (_default_client, _default_owned)
        _default_client, _default_owned = client, owned and client is not None
    return previous
