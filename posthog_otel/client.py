"""The PostHog client: configuration, message assembly on the caller's thread, and the
handle on the batching exporter that delivers events from its own thread."""

from __future__ import annotations

import atexit
import ipaddress
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import _config, _shutdown
from ._context import IdentityContext, _current
from ._fork import fork_safe_lock, import_now
from ._ids import normalize_uuid, uuid7
from ._log import enable_debug, logger
from ._snapshot import (
    ENTRY_BYTES,
    EVENT_BYTES,
    IMMUTABLE,
    encoded_bytes,
    snapshot_values,
)
from ._stats import ClientStats, StatsRecorder
from ._version import __version__
from .export import BatchExporter, Clock, ExporterConfig, HttpTransport, SystemClock, V0Lane
from .export._exporter import (
    DEFAULT_ITEM_BYTES,
    DEFAULT_MAX_QUEUE_BYTES,
    THREAD_IMPORTS,
    Deferred,
)
from .export._serialize import format_timestamp
from .flags._results import FlagEvaluations, FlagResult, FlagValue
from .flags._worker import FlagsWorker, Overrides
from .messages import Alias, Capture, GroupIdentify, Identify, Message

if TYPE_CHECKING:
    import httpx

    from .flags._service import FlagsService

__all__ = ["Client"]

LIB_NAME = "posthog-otel"
# /flags decides from the User-Agent whether the caller is a server runtime; a name it
# does not know hides server-only flags. We lead with the official SDK's token, whose
# v0 wire behaviour we reproduce, and name ourselves after it.
WIRE_COMPAT_VERSION = "7.91.1"
USER_AGENT = f"posthog-python/{WIRE_COMPAT_VERSION} {LIB_NAME}/{__version__}"

Event = dict[str, Any]
BeforeSend = Callable[[Event], "Event | None"]
OnError = Callable[[Exception, list[Event]], None]

_MAX_BATCH_BYTES = 5 * 1024 * 1024
_EMPTY: Mapping[str, Any] = {}
_now = time.time


class Client:
    """A PostHog client with a batching exporter; every argument (and the environment
    variable behind it) is listed in ``docs/configuration.md``.

    ``enqueue`` (and the conveniences built on it) never raise and never block on the
    network: they assemble the event, run ``before_send`` and append it to a bounded
    queue that a background thread sends in gzip'd batches with retries.
    """

    _flags: FlagsService  # built on first use (see __getattr__)

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
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_batch_size: int = 1000,
        max_batch_bytes: int = _MAX_BATCH_BYTES,
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
        _clock: Clock | None = None,
        _exit_hook: bool = True,
    ) -> None:
        if api_key is not None and not isinstance(api_key, str):
            raise ValueError(f"api_key must be a string, got {type(api_key).__name__}")
        key = (api_key or "").strip() or _config.env_first(
            "POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY"
        )
        self._api_key = key or ""
        full_host = _config.resolve_host(host)
        # Credentials in the host go to the transport only: ``host`` and the repr never
        # show them (the transport sends them as a header, out of httpx's log lines).
        self.host = _config.split_credentials(full_host)[0]
        self._masked_host = _config.mask_credentials(full_host)
        if secret_key is None:
            secret_key = personal_api_key
        if secret_key is None:
            secret_key = _config.env_first("POSTHOG_SECRET_KEY", "POSTHOG_PERSONAL_API_KEY")
        self._secret_key = (secret_key or "").strip() or None
        if self._secret_key:
            _warn_if_cleartext(self.host)

        config = ExporterConfig(
            flush_at=_config.check_int("flush_at", flush_at, 1),
            flush_interval=_config.check_float("flush_interval", flush_interval, positive=True),
            max_queue_size=_config.check_int("max_queue_size", max_queue_size, 1),
            max_queue_bytes=_config.check_int("max_queue_bytes", max_queue_bytes, 1),
            max_batch_size=_config.check_int("max_batch_size", max_batch_size, 1),
            max_batch_bytes=_config.check_int("max_batch_bytes", max_batch_bytes, 64 * 1024),
            timeout=_config.check_float("timeout", timeout, positive=True),
            max_retries=_config.check_int("max_retries", max_retries, 0),
            max_retry_cycles=_config.check_int("max_retry_cycles", max_retry_cycles, 1),
            sync_mode=bool(sync_mode),
        )
        self.shutdown_timeout = _config.check_float("shutdown_timeout", shutdown_timeout)
        self._flush_on_sigterm = (
            _shutdown.flush_on_sigterm_default()
            if flush_on_sigterm is None
            else bool(flush_on_sigterm)
        )
        self.feature_flags_poll_interval = _config.check_float(
            "feature_flags_poll_interval", feature_flags_poll_interval, positive=True
        )
        self.feature_flags_request_timeout = _config.check_float(
            "feature_flags_request_timeout", feature_flags_request_timeout, positive=True
        )
        self.feature_flags_request_max_retries = _config.check_int(
            "feature_flags_request_max_retries", feature_flags_request_max_retries, 0
        )
        self.feature_flags_initial_load_timeout = _config.check_float(
            "feature_flags_initial_load_timeout", feature_flags_initial_load_timeout
        )
        if flag_result_cache_ttl is not None:
            _config.check_float("flag_result_cache_ttl", flag_result_cache_ttl)
        self.flag_result_cache_ttl = flag_result_cache_ttl
        self.flag_definition_cache_provider = flag_definition_cache_provider
        _config.check_callable("on_error", on_error)
        self._on_error = on_error
        self._before_send = _hooks(before_send)
        if super_properties is not None and not isinstance(super_properties, Mapping):
            raise ValueError("super_properties must be a mapping")
        self._super_properties = dict(super_properties or {})
        self._disable_geoip = bool(disable_geoip)
        self._base_properties = self._make_base_properties(self._disable_geoip)
        self._base_properties_geoip_flipped = self._make_base_properties(not self._disable_geoip)
        self._opted_out = False
        self._closed = False
        self._accepting = False
        self._close_lock = fork_safe_lock()
        self._exit_deadline: float | None = None  # set by the exit hook (see there)
        self._exit_producers: list[weakref.WeakMethod[Callable[[], object]]] = []

        if debug:
            enable_debug()
        self._disabled = bool(disabled) or not self._api_key
        if not self._api_key and not disabled:
            logger.warning(
                "no PostHog API key (api_key, POSTHOG_API_KEY or POSTHOG_PROJECT_API_KEY): "
                "the client is disabled and drops every event"
            )

        self._stats = StatsRecorder()
        self._attempt = self._stats.attempts  # counts every event handed to the client
        self._transport = HttpTransport(full_host, user_agent=USER_AGENT, http_client=http_client)
        lane = V0Lane(
            self._api_key,
            gzip=bool(gzip),
            historical_migration=bool(historical_migration),
            stats=self._stats,
        )
        self._exporter = BatchExporter(
            lane,
            self._transport,
            config,
            stats=self._stats,
            clock=_clock,
            on_error=self._on_error,
            on_thread_start=self._prepare_exit if _exit_hook else None,
        )
        if not self._disabled:  # what our threads use is made here, not where forks happen
            import_now(*THREAD_IMPORTS)
            self._transport.prepare()
        self._submit_event = self._exporter.submit  # (item, estimated encoded bytes)
        self._flags_worker = FlagsWorker(
            self._fetch_event_flags, self._deliver_completed, self._stats
        )
        self._clock = _clock or SystemClock()
        self._flags_lock = fork_safe_lock()  # the flag service is built on first use
        self._update_accepting()
        if _exit_hook:  # an owner that closes the client itself (the span exporter) opts out
            _register(self)

    def __getattr__(self, name: str) -> Any:
        # Only ``_flags`` is computed: on first use, so that importing and building the
        # flag evaluator costs nothing to an application that does not read flags.
        if name != "_flags":
            raise AttributeError(name)
        with self._flags_lock:
            service = self.__dict__.get("_flags")
            if service is None:
                from .flags._config import FlagsConfig
                from .flags._service import FlagsService

                config = FlagsConfig(
                    poll_interval=self.feature_flags_poll_interval,
                    request_timeout=self.feature_flags_request_timeout,
                    max_retries=self.feature_flags_request_max_retries,
                    initial_load_timeout=self.feature_flags_initial_load_timeout,
                    cache_provider=self.flag_definition_cache_provider,  # type: ignore[arg-type]
                    result_cache_ttl=self.flag_result_cache_ttl,
                    disable_geoip=self._disable_geoip,
                )
                service = self.__dict__["_flags"] = FlagsService(
                    config,
                    self._transport,
                    api_key=self._api_key,
                    secret_key=self._secret_key,
                    stats=self._stats,
                    clock=self._clock,
                    emit=self._emit_flag_event,
                )
        return service

    @property
    def flags(self) -> FlagsService:
        """The flag service: a seam for integrations such as the OpenFeature provider."""
        return self._flags

    def _emit_flag_event(self, message: Capture, keep: frozenset[str] | None) -> object:
        """How the flag service sends ``$feature_flag_called``: the full event, or the
        minimal form cut down to ``keep``."""
        if keep is None:
            return self.enqueue(message)
        return self._enqueue_capture(message, _current.get(), keep)

    def _make_base_properties(self, disable_geoip: bool) -> dict[str, Any]:
        base: dict[str, Any] = {"$lib": LIB_NAME, "$lib_version": __version__}
        if disable_geoip:
            base["$geoip_disable"] = True
        base.update(self._super_properties)
        return base

    def __repr__(self) -> str:
        return (
            f"Client(host={self._masked_host!r}, api_key={_config.mask_key(self._api_key)!r}, "
            f"disabled={self._disabled})"
        )

    # ------------------------------------------------------------------ state

    @property
    def disabled(self) -> bool:
        """True when the client drops everything (no API key, or ``disabled=True``)."""
        return self._disabled

    def opt_out(self) -> None:
        """Stop capturing (in memory, at runtime): ``enqueue`` returns ``None``."""
        self._opted_out = True
        self._update_accepting()

    def opt_in(self) -> None:
        """Resume capturing after ``opt_out()``."""
        self._opted_out = False
        self._update_accepting()

    @property
    def is_opted_out(self) -> bool:
        return self._opted_out

    @property
    def stats(self) -> ClientStats:
        """A snapshot of queue depth and delivery counters. Events waiting in the flags
        worker for ``/flags`` count as ``queued`` (and ``enqueued``)."""
        waiting, abandoned = self._flags_worker.counts()
        enqueued, queued, in_flight, retained = self._exporter.counts()
        return self._stats.snapshot(
            queued=queued + waiting,
            in_flight=in_flight,
            retained=retained,
            enqueued=enqueued + waiting + abandoned,
        )

    # ------------------------------------------------------------------ enqueue

    def enqueue(self, message: Message) -> str | None:
        """Queue ``message`` for delivery; its uuid, or ``None`` if it was dropped
        (every drop is counted in ``stats.dropped``). Never raises, never blocks."""
        self._attempt()
        try:
            if not self._accepting:
                return self._count_refusal()
            if type(message) is Capture:
                if message.send_feature_flags and message.flags is None:
                    return self._capture_with_flags(message)
                built = self._capture_event(message, _current.get())
            else:
                built = self._other_event(message)
            return None if built is None else self._submit(*built)
        except Exception as exc:
            return self._unexpected("enqueue", exc)

    def _update_accepting(self) -> None:
        self._accepting = not (self._closed or self._disabled or self._opted_out)

    def _exporter_submit(self, item: Deferred, nbytes: int = DEFAULT_ITEM_BYTES) -> bool:
        """For integrations: queue a deferred event (built on the flush thread), counted
        as attempted. ``nbytes``: an estimate of what it keeps alive (``max_queue_bytes``)."""
        self._attempt()
        if self._submit_event(item, nbytes):
            if self._exit_deadline is not None:
                self.flush()  # after the exit hook ran, nothing else would send it
            return True
        return False

    def _refuse(self) -> str | None:
        """For integrations: an event handed to the client while it accepts none."""
        self._attempt()
        return self._count_refusal()

    def _count_refusal(self) -> str | None:
        """Count an event refused because the client is closed, disabled or opted out;
        returns ``None`` for the caller."""
        if self._closed:
            self._stats.drop("closed", 1, " (enqueue after close())")
        elif self._disabled:
            self._stats.drop("disabled", 1, " (client disabled)")
        else:
            self._stats.drop("opted_out", 1, " (client opted out)")
        return None

    def _other_event(self, message: object) -> tuple[Event, int] | None:
        """An identify, alias or group event and its encoded size (these are rare: the
        size is measured, not estimated)."""
        cls = type(message)
        if cls is Identify:
            event = self._identify_event(message)  # type: ignore[arg-type]
        elif cls is Alias:
            event = self._alias_event(message)  # type: ignore[arg-type]
        elif cls is GroupIdentify:
            event = self._group_identify_event(message)  # type: ignore[arg-type]
        else:
            self._invalid(
                f"message must be Capture, Identify, Alias or GroupIdentify, not {cls.__name__}"
            )
            return None
        return None if event is None else (event, encoded_bytes(event))

    def _enqueue_capture(
        self,
        message: Capture,
        ctx: IdentityContext | None,
        keep: frozenset[str] | None = None,
    ) -> str | None:
        """``enqueue`` for the integrations: a capture under an explicit identity context
        (the one a structlog event or span carried, or a personless one). With ``keep``,
        the properties are cut down to those names (minimal flag events: super and
        context properties are left out too)."""
        self._attempt()
        try:
            if not self._accepting:
                return self._count_refusal()
            built = self._capture_event(message, ctx)
            if built is None:
                return None
            event, nbytes = built
            if keep is not None:
                event["properties"] = {k: v for k, v in event["properties"].items() if k in keep}
            return self._submit(event, nbytes)
        except Exception as exc:
            return self._unexpected("capture", exc)

    def _deferred_capture(self, message: Capture, ctx: IdentityContext | None) -> Event | None:
        """Build and filter a deferred capture; runs on the flush thread. Its values
        were snapshotted on the caller's thread (by the integration that queued it)."""
        built = self._capture_event(message, ctx, copy_values=False)
        if built is None:
            return None
        if self._before_send:
            return self._run_before_send(built[0])
        return built[0]

    def _deferred_fields(
        self,
        name: str,
        distinct_id: object,
        properties: dict[str, Any],
        groups: Mapping[str, Any] | None,
        timestamp: object,
        ctx: IdentityContext | None,
    ) -> Event | None:
        """``_deferred_capture`` of ``Capture(name, distinct_id, properties, groups=groups,
        timestamp=timestamp)``, without making the ``Capture``: the log handler's and the
        structlog processor's builders, once per event on the flush thread."""
        built = self._assemble(
            name,
            distinct_id,
            properties,
            groups,
            timestamp,
            None,
            self._base_properties,
            ctx,
            None,
            False,
            False,
        )
        if built is None:
            return None
        if self._before_send:
            return self._run_before_send(built[0])
        return built[0]

    def _submit(self, event: Event, nbytes: int) -> str | None:
        """``before_send``, then the queue; ``nbytes`` is the event's estimated size."""
        if self._before_send:
            result = self._run_before_send(event)
            if result is None:
                return None
            event = result
        if self._submit_event(event, nbytes):
            if self._exit_deadline is not None:
                self.flush()  # after the exit hook ran, nothing else would send it
            return event["uuid"]  # type: ignore[no-any-return]
        return None

    def _unexpected(self, what: str, exc: Exception) -> str | None:
        """An event that could not be built because something raised (usually a value
        whose ``__str__``, ``__bool__`` or iteration raises): counted as ``invalid`` and
        warned at most once per interval like every drop, so a flood of bad input never
        becomes a flood of tracebacks (the traceback goes to DEBUG, once per kind)."""
        self._stats.drop("invalid", 1, f": {what} raised {_describe(exc)}; event dropped")
        kind = (what, type(exc).__qualname__)
        if kind not in _traceback_logged and len(_traceback_logged) < 100:
            _traceback_logged.add(kind)
            logger.debug("%s raised; the event was dropped", what, exc_info=True)
        return None

    def _invalid(self, detail: str) -> Event | None:
        """Count and warn about an invalid message; returns ``None`` for the caller."""
        self._stats.drop("invalid", 1, f": {detail}")
        return None

    def _uuid_and_time(self, message: Any) -> tuple[str, object]:
        given = message.uuid
        if given is None:
            event_uuid = uuid7()
        else:
            event_uuid = normalize_uuid(given) or self._replace_uuid(given)
        timestamp = message.timestamp
        return event_uuid, _now() if timestamp is None else timestamp

    def _replace_uuid(self, given: object) -> str:
        self._stats.correct("invalid_uuid", f"uuid {given!r} is not a UUID; replaced by a new one")
        return uuid7()

    def _capture_event(
        self, message: Capture, ctx: IdentityContext | None, copy_values: bool = True
    ) -> tuple[Event, int] | None:
        """The hot path: assemble a capture's wire event with as little work as possible;
        the event and its estimated encoded size (``None``: invalid, counted).

        ``ctx`` is the identity context in force when the event happened (the caller's,
        or the one a deferred log record snapshotted). With ``copy_values``, the values of
        ``properties`` are copied now (``_snapshot``), so that a later mutation by the
        caller cannot change what is sent; identity-context properties were copied when
        the context was entered."""
        geoip = message.disable_geoip
        return self._assemble(
            message.event,
            message.distinct_id,
            message.properties,
            message.groups,
            message.timestamp,
            message.uuid,
            self._base_properties
            if geoip is None or geoip == self._disable_geoip
            else self._base_properties_geoip_flipped,
            ctx,
            message.flags,
            message.send_feature_flags,
            copy_values,
        )

    def _assemble(
        self,
        name: object,
        distinct_id: object,
        props: Mapping[str, Any] | None,
        groups: Mapping[str, Any] | None,
        timestamp: object,
        given_uuid: object,
        base: Mapping[str, Any],
        ctx: IdentityContext | None,
        snapshot: object,
        send_feature_flags: bool,
        copy_values: bool,
    ) -> tuple[Event, int] | None:
        """``_capture_event`` from a capture's fields: what the integrations' builders
        call on the flush thread (``_deferred_fields``), without making a ``Capture``
        (a frozen dataclass: about a microsecond per event)."""
        if type(name) is not str or not name:
            self._invalid(f"Capture.event must be a non-empty string, got {name!r}")
            return None
        if props is None:
            props = _EMPTY
        elif type(props) is not dict and not isinstance(props, Mapping):
            self._invalid(
                f"Capture.properties of {name!r} must be a mapping, not {type(props).__name__}"
            )
            return None
        if distinct_id is not None and type(distinct_id) is not str:
            try:
                distinct_id = str(distinct_id)
            except Exception as exc:
                self._invalid(f"the distinct_id of {name!r}: str() raised {_describe(exc)}")
                return None
        if ctx is None:
            if not distinct_id:
                self._invalid(
                    f"Capture {name!r} has no distinct_id and there is no identity context"
                )
                return None
            properties = {**base, **props}
        else:
            properties = {**base, **ctx.properties, **props}
            if not distinct_id:
                distinct_id = ctx.distinct_id
                if not distinct_id:
                    distinct_id = uuid7()
                    properties.setdefault("$process_person_profile", False)
            if ctx.session_id and "$session_id" not in properties:
                properties["$session_id"] = ctx.session_id
        # The values of the moment (see _snapshot): scalars are kept (the loop only adds
        # up their size), anything else is copied.
        nbytes = 0  # a deferred event was measured when it was queued
        if copy_values:
            nbytes = EVENT_BYTES + len(name) + ENTRY_BYTES * len(props)
            for value in props.values():
                cls = type(value)
                if cls is str:
                    nbytes += len(value)
                elif cls not in IMMUTABLE:
                    nbytes = EVENT_BYTES + len(name)
                    nbytes += snapshot_values(props, properties, self._stats.correct, name)
                    break
        if groups:
            if not isinstance(groups, Mapping):
                self._invalid(f"Capture.groups of {name!r} must be a mapping")
                return None
            properties["$groups"] = self._copied(groups, name)
        if snapshot is not None or send_feature_flags:
            if not isinstance(snapshot, FlagEvaluations):
                snapshot = self._flags_for_event(name, distinct_id, groups)
            elif send_feature_flags:
                self._stats.warner.warn(
                    "flags_and_send_feature_flags",
                    "capture(flags=..., send_feature_flags=True): the snapshot wins",
                )
            if snapshot is not None:
                for flag_property, value in snapshot.event_properties().items():
                    properties.setdefault(flag_property, value)
        return {
            "event": name,
            "distinct_id": distinct_id,
            "properties": properties,
            "timestamp": _now() if timestamp is None else timestamp,
            "uuid": uuid7()
            if given_uuid is None
            else normalize_uuid(given_uuid) or self._replace_uuid(given_uuid),
        }, nbytes

    def _capture_with_flags(self, message: Capture) -> str | None:
        """``send_feature_flags=True``: flag properties from local evaluation on this
        thread (microseconds, no request) when definitions are loaded; otherwise the
        flags worker fetches them with one ``/flags`` call and queues the event."""
        try:
            local = self._flags.definitions(wait=False) is not None
        except Exception:
            local = False  # the worker's path: without flags if /flags fails too
        if local:
            built = self._capture_event(message, _current.get())
            return None if built is None else self._submit(*built)
        built = self._capture_event(replace(message, send_feature_flags=False), _current.get())
        if built is None:
            return None
        event = built[0]  # its size grows by the flags: measured again when it completes
        groups = message.groups if isinstance(message.groups, Mapping) else {}
        self._flags_worker.submit(
            event, event["distinct_id"], groups, self._flags.context_overrides()
        )
        return event["uuid"]  # type: ignore[no-any-return]

    def _fetch_event_flags(
        self, distinct_id: str, groups: Mapping[str, Any], overrides: Overrides
    ) -> dict[str, Any] | None:
        """The flags worker's request: ``$feature/*`` properties from one ``/flags`` call,
        with the overrides of the identity context the event was captured in."""
        did, results = self._event_flags(distinct_id, groups, remote=True, overrides=overrides)
        return FlagEvaluations(did, results).event_properties() if results else None

    def _event_flags(
        self,
        distinct_id: object,
        groups: Mapping[str, Any] | None,
        *,
        remote: bool,
        overrides: Overrides = None,
    ) -> tuple[str | None, dict[str, FlagResult]]:
        """Every flag for an event's ``send_feature_flags``: one ``/flags`` call
        (``remote``), or local evaluation only; ``overrides`` are those of the identity
        context the event was captured in (the worker thread has none of its own)."""
        person, group_properties = overrides if overrides is not None else (None, None)
        return self._flags.evaluate(
            distinct_id,
            flag_keys=None,
            groups=groups,
            person_properties=person,
            group_properties=group_properties,
            only_evaluate_locally=not remote,
            force_remote=remote,
            disable_geoip=None,
        )

    def _deliver_completed(self, event: Event) -> None:
        """A worker-completed event: ``before_send`` (on the worker), then the queue."""
        if self._before_send:
            event = self._run_before_send(event)  # type: ignore[assignment]
            if event is None:
                return
        self._submit_event(event, encoded_bytes(event))

    def _flags_for_event(
        self, name: str, distinct_id: object, groups: Mapping[str, Any] | None
    ) -> FlagEvaluations | None:
        """``send_feature_flags`` with loaded definitions: local evaluation, no request.
        Whatever goes wrong, the event goes without flag properties (counted)."""
        try:
            definitions = self._flags.definitions(wait=False)
            if definitions is None:
                return None
            did, results = self._event_flags(distinct_id, groups, remote=False)
            return FlagEvaluations(did, results)
        except Exception as exc:
            self._stats.correct(
                "flags_unavailable",
                f"send_feature_flags: flags could not be evaluated ({type(exc).__name__}); "
                f"{name!r} sent without flag properties",
            )
            return None

    def _identify_event(self, message: Identify) -> Event | None:
        return self._person_event(
            "$identify", message.distinct_id, message.properties, message.set_once, message
        )

    def _person_event(
        self,
        name: str,
        distinct_id: object,
        set_props: Mapping[str, Any] | None,
        set_once: Mapping[str, Any] | None,
        message: Any,
    ) -> Event | None:
        did = _as_id(distinct_id)
        if not did:
            return self._invalid(f"{name} needs a non-empty distinct_id")
        for field_name, value in (("properties", set_props), ("set_once", set_once)):
            if value is not None and not isinstance(value, Mapping):
                return self._invalid(f"{name} {field_name} must be a mapping")
        properties = dict(self._base_properties)
        event_uuid, timestamp = self._uuid_and_time(message)
        event: Event = {
            "event": name,
            "distinct_id": did,
            "properties": properties,
            "timestamp": timestamp,
            "uuid": event_uuid,
        }
        # In properties (the form every endpoint accepts) and mirrored at top level (v0).
        try:
            if set_props is not None or name == "$identify":
                properties["$set"] = event["$set"] = self._copied(set_props or _EMPTY, name)
            if set_once is not None:
                properties["$set_once"] = event["$set_once"] = self._copied(set_once, name)
        except Exception as exc:
            return self._invalid(f"{name}: reading its properties raised {_describe(exc)}")
        return event

    def _copied(self, mapping: Mapping[str, Any], name: str) -> dict[str, Any]:
        """A copy of ``mapping`` with the values of the moment (``_snapshot``); raises
        if ``mapping`` itself cannot be read (the caller counts the event as invalid)."""
        copy = dict(mapping)
        snapshot_values(copy, copy, self._stats.correct, name)
        return copy

    def _alias_event(self, message: Alias) -> Event | None:
        previous, new = _as_id(message.distinct_id), _as_id(message.alias)
        if not previous or not new:
            return self._invalid("Alias needs a non-empty distinct_id and alias")
        properties = {**self._base_properties, "distinct_id": previous, "alias": new}
        self._add_session(properties)
        event_uuid, timestamp = self._uuid_and_time(message)
        return {
            "event": "$create_alias",
            "distinct_id": previous,
            "properties": properties,
            "timestamp": timestamp,
            "uuid": event_uuid,
        }

    def _group_identify_event(self, message: GroupIdentify) -> Event | None:
        group_type, group_key = _as_id(message.type), _as_id(message.key)
        if not group_type or not group_key:
            return self._invalid("GroupIdentify needs a non-empty type and key")
        props = message.properties
        if props is not None and not isinstance(props, Mapping):
            return self._invalid("GroupIdentify.properties must be a mapping")
        properties = {
            **self._base_properties,
            "$group_type": group_type,
            "$group_key": group_key,
            "$group_set": self._copied(props or _EMPTY, "$groupidentify"),
        }
        self._add_session(properties)
        event_uuid, timestamp = self._uuid_and_time(message)
        return {
            "event": "$groupidentify",
            "distinct_id": _as_id(message.distinct_id) or f"${group_type}_{group_key}",
            "properties": properties,
            "timestamp": timestamp,
            "uuid": event_uuid,
        }

    @staticmethod
    def _add_session(properties: dict[str, Any]) -> None:
        ctx = _current.get()
        if ctx is not None and ctx.session_id:
            properties.setdefault("$session_id", ctx.session_id)

    def _run_before_send(self, event: Event) -> Event | None:
        """Run the hook chain on the caller's thread; fail closed."""
        event["timestamp"] = format_timestamp(event["timestamp"])[0]
        name = event.get("event")
        for hook in self._before_send:
            try:
                result = hook(event)
            except Exception as exc:
                self._stats.drop(
                    "before_send_error",
                    1,
                    f": before_send hook {_hook_name(hook)} raised {type(exc).__name__} "
                    f"on {name!r}; event discarded",
                )
                return None
            if result is None:
                self._stats.drop("before_send", 1, f": before_send returned None for {name!r}")
                return None
            if not isinstance(result, dict):
                self._stats.drop(
                    "before_send_error",
                    1,
                    f": before_send hook {_hook_name(hook)} returned "
                    f"{type(result).__name__}, not a dict",
                )
                return None
            event = result
        if not isinstance(event.get("event"), str) or not event.get("event"):
            return self._invalid("before_send left the event without a name")
        if not _as_id(event.get("distinct_id")):
            return self._invalid("before_send left the event without a distinct_id")
        event["distinct_id"] = _as_id(event["distinct_id"])
        if not isinstance(event.get("properties"), dict):
            event["properties"] = {}
        checked = normalize_uuid(event.get("uuid"))
        event["uuid"] = checked or self._replace_uuid(event.get("uuid"))
        return event

    # ------------------------------------------------------------------ conveniences

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
        return self.enqueue(
            Capture(
                event,
                distinct_id,
                properties,
                groups,
                timestamp,
                uuid,
                send_feature_flags,
                flags,
                disable_geoip,
            )
        )

    def identify(
        self,
        distinct_id: object,
        properties: Mapping[str, Any] | None = None,
        set_once: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Send ``$identify`` setting person ``properties`` (and ``set_once`` ones)."""
        return self.enqueue(Identify(distinct_id, properties, set_once))

    def set(self, distinct_id: object, properties: Mapping[str, Any]) -> str | None:
        """Set person properties (a ``$set`` event); empty properties send nothing."""
        return self._person_convenience("$set", distinct_id, properties, None)

    def set_once(self, distinct_id: object, properties: Mapping[str, Any]) -> str | None:
        """Set person properties only where not yet set (a ``$set_once`` event)."""
        return self._person_convenience("$set_once", distinct_id, None, properties)

    def _person_convenience(
        self,
        name: str,
        distinct_id: object,
        set_props: Mapping[str, Any] | None,
        set_once: Mapping[str, Any] | None,
    ) -> str | None:
        self._attempt()
        try:
            if not (set_props or set_once):
                self._invalid(f"{name} called with no properties")
                return None
            if not self._accepting:
                return self._count_refusal()
            event = self._person_event(
                name, distinct_id, set_props, set_once, Identify(distinct_id)
            )
            return None if event is None else self._submit(event, encoded_bytes(event))
        except Exception as exc:
            return self._unexpected(name, exc)

    def alias(self, previous_id: object, distinct_id: object) -> str | None:
        """Make ``distinct_id`` (new) an alias of the person known as ``previous_id``."""
        return self.enqueue(Alias(distinct_id=previous_id, alias=distinct_id))

    def group_identify(
        self,
        group_type: str,
        group_key: object,
        properties: Mapping[str, Any] | None = None,
        distinct_id: object = None,
    ) -> str | None:
        """Create or update a group (``$groupidentify``)."""
        return self.enqueue(GroupIdentify(group_type, group_key, properties, distinct_id))

    # ------------------------------------------------------------------ feature flags

    def get_feature_flag_result(
        self,
        key: str,
        distinct_id: object = None,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        force_remote: bool = False,
        disable_geoip: bool | None = None,
        send_feature_flag_events: bool = True,
    ) -> FlagResult | None:
        """The flag's value, payload and provenance; ``None`` if it cannot be known.

        Local evaluation first (when definitions are loaded), one ``/flags`` request
        otherwise. Never raises; with no distinct id (argument or identity context) no
        request is made and no event is sent.
        """
        if self._disabled:
            return None
        return self._flags.result(
            key,
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            force_remote,
            disable_geoip,
            send_feature_flag_events,
        )

    def get_feature_flag(
        self,
        key: str,
        distinct_id: object = None,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        force_remote: bool = False,
        disable_geoip: bool | None = None,
        send_feature_flag_events: bool = True,
    ) -> FlagValue | None:
        """The variant, ``True``/``False``, or ``None`` when unknown."""
        if self._disabled:
            return None
        result = self._flags.result(
            key,
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            force_remote,
            disable_geoip,
            send_feature_flag_events,
        )
        return None if result is None else result.get_value()  # result() never raises

    def is_feature_enabled(
        self,
        key: str,
        distinct_id: object = None,
        *,
        default_value: bool = False,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        force_remote: bool = False,
        disable_geoip: bool | None = None,
        send_feature_flag_events: bool = True,
    ) -> bool:
        """Whether the flag is on (any variant counts); ``default_value`` when unknown."""
        if self._disabled:
            return default_value
        result = self._flags.result(
            key,
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            force_remote,
            disable_geoip,
            send_feature_flag_events,
        )
        return default_value if result is None else result.enabled

    feature_enabled = is_feature_enabled

    def get_feature_flag_payload(
        self,
        key: str,
        distinct_id: object = None,
        *,
        match_value: FlagValue | None = None,
        send_feature_flag_events: bool = False,
        **options: Any,
    ) -> Any:
        """The JSON payload of the flag's value (silent by default)."""
        result = self.get_feature_flag_result(
            key, distinct_id, send_feature_flag_events=send_feature_flag_events, **options
        )
        if result is None or (match_value is not None and result.get_value() != match_value):
            return None
        return result.payload

    def evaluate_flags(
        self,
        distinct_id: object = None,
        *,
        flag_keys: Sequence[str] | None = None,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        force_remote: bool = False,
        disable_geoip: bool | None = None,
    ) -> FlagEvaluations:
        """A snapshot of flags for one person: one local pass, at most one request."""
        if self._disabled:
            return FlagEvaluations(None, {})
        try:
            did, results = self._flags.evaluate(
                distinct_id,
                flag_keys=flag_keys,
                groups=groups,
                person_properties=person_properties,
                group_properties=group_properties,
                only_evaluate_locally=only_evaluate_locally,
                force_remote=force_remote,
                disable_geoip=disable_geoip,
            )
        except Exception:
            logger.exception("feature flags could not be evaluated")
            return FlagEvaluations(None, {})
        return self._flags.snapshot(did, results, groups)

    def get_all_flags(self, distinct_id: object = None, **options: Any) -> dict[str, FlagValue]:
        """Every flag's value for this person (``flag_keys=`` to scope)."""
        return {
            key: result.enabled if result.variant is None else result.variant
            for key, result in self._all_results(distinct_id, options)
        }

    def _all_results(
        self, distinct_id: object, options: Mapping[str, Any]
    ) -> Iterable[tuple[str, FlagResult]]:
        """The results of one evaluation pass, without building a snapshot (silent)."""
        if self._disabled:
            return ()
        try:
            _, results = self._flags.evaluate(
                distinct_id,
                flag_keys=options.get("flag_keys"),
                groups=options.get("groups"),
                person_properties=options.get("person_properties"),
                group_properties=options.get("group_properties"),
                only_evaluate_locally=options.get("only_evaluate_locally", False),
                force_remote=options.get("force_remote", False),
                disable_geoip=options.get("disable_geoip"),
            )
        except Exception:
            logger.exception("feature flags could not be evaluated")
            return ()
        return results.items()

    def get_all_flags_and_payloads(
        self, distinct_id: object = None, **options: Any
    ) -> dict[str, dict[str, Any]]:
        """``{"featureFlags": {...}, "featureFlagPayloads": {...}}`` (payloads of enabled
        flags, decoded from JSON)."""
        results = list(self._all_results(distinct_id, options))
        return {
            "featureFlags": {k: r.get_value() for k, r in results},
            "featureFlagPayloads": {
                k: r.payload for k, r in results if r.enabled and r.payload is not None
            },
        }

    def reload_feature_flags(self) -> None:
        """Fetch flag definitions now (when local evaluation is configured)."""
        if self._disabled:
            return
        try:
            self._flags.reload()
        except Exception:
            logger.exception("reloading flag definitions failed")

    def set_person_properties_for_flags(
        self, properties: Mapping[str, Any], reload_feature_flags: bool = True
    ) -> None:
        """Person properties used by later flag evaluations. Inside an identity context
        they belong to that context (they end with it, merged over the client-level ones).
        Definitions are not refetched: they apply from the next read. Anything but a
        mapping is ignored (counted in ``stats.corrected``, warned about)."""
        self._flags.set_person_overrides(properties)

    def set_group_properties_for_flags(
        self, group_properties: Mapping[str, Mapping[str, Any]], reload_feature_flags: bool = True
    ) -> None:
        """Group properties (by group type) used by later flag evaluations, scoped like
        ``set_person_properties_for_flags``."""
        self._flags.set_group_overrides(group_properties)

    def reset_person_properties_for_flags(self) -> None:
        self._flags.reset_person_overrides()

    def reset_group_properties_for_flags(self) -> None:
        self._flags.reset_group_overrides()

    # ------------------------------------------------------------------ lifecycle

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued before the call through one delivery cycle (with
        retries); ``True`` if all of it was delivered. ``timeout=0`` does not wait; the
        flags worker and the exporter share the one ``timeout``."""
        try:
            deadline = _deadline(timeout)
            at_exit = self._exit_deadline
            if at_exit is not None:  # at interpreter exit: one deadline for every flush
                deadline = at_exit if deadline is None else min(deadline, at_exit)
            drained = self._flags_worker.drain(_remaining(deadline))
            delivered = self._exporter.flush(_remaining(deadline)) and drained
            if (
                not delivered
                and at_exit is not None
                and not self._closed
                and not self._exporter.on_worker_thread()  # on_error cannot wait for itself
            ):
                _, queued, in_flight, _ = self._exporter.counts()
                waiting, _ = self._flags_worker.counts()
                if queued or in_flight or waiting:  # out of time or failing: count the loss
                    self.close(_remaining(at_exit))
            return delivered
        except Exception:
            logger.exception("flush failed unexpectedly")
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop; later ``enqueue`` calls return ``None``. Idempotent.

        Returns within ``timeout`` seconds (``None``: ``shutdown_timeout``), one deadline
        shared by the flags worker, the flag poller and the exporter; what could not be
        delivered by then is counted as dropped (``shutdown``)."""
        if timeout is None:
            timeout = self.shutdown_timeout
        deadline = _deadline(timeout)
        with self._close_lock:
            self._closed = True
            self._update_accepting()
        _live_clients.pop(id(self), None)
        if self._exporter.on_worker_thread():
            # From on_error, on the flush thread: all of the rest (flag threads too)
            # finishes in a helper thread.
            threading.Thread(
                target=self._finish_close, args=(deadline,), name="posthog_otel-close"
            ).start()
            return False
        return self._finish_close(deadline)

    def _finish_close(self, deadline: float | None) -> bool:
        """Stop the flag threads, then flush and stop the exporter, by ``deadline``."""
        try:
            self._flags_worker.close(_remaining(deadline))
            if "_flags" in self.__dict__:  # never built: nothing to stop
                self._flags.close(_remaining(deadline))
        except Exception:
            logger.exception("closing the flag poller failed")
        try:
            return self._exporter.close(_remaining(deadline))
        except Exception:
            logger.exception("close failed unexpectedly")
            return False

    shutdown = close

    def _prepare_exit(self) -> None:
        """The flush thread starts (events may now wait in the queue): have them flushed
        even if this process ends without atexit (SIGTERM, multiprocessing child)."""
        _shutdown.prepare_exit(_close_all_at_exit, sigterm=self._flush_on_sigterm)

    def _push_at_exit(self, producer: Callable[[], object]) -> None:
        """Have the exit hook call ``producer`` (a bound method, held weakly) before it
        flushes: something that holds items for this client, such as the span
        processor ``instrument()`` attached, whose provider may never shut down."""
        self._exit_producers.append(weakref.WeakMethod(producer))

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(self.shutdown_timeout)


_warned_cleartext: list[bool] = []
_traceback_logged: set[tuple[str, str]] = set()  # (where, exception type) already shown


def _warn_if_cleartext(host: str) -> None:
    """Warn (once per process) when the secret key would cross the network in clear
    text: plain ``http://`` to a host that is not this machine."""
    parts = urlsplit(host)
    if parts.scheme != "http" or _warned_cleartext:
        return
    name = (parts.hostname or "").rstrip(".")
    try:
        loopback = ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = name == "localhost" or name.endswith(".localhost")
    if not loopback:
        _warned_cleartext.append(True)
        logger.warning(
            "the secret key (personal API key) is sent over plain http:// to %s: anyone on "
            "the network path can read it; use https://",
            parts.hostname,
        )


def _deadline(timeout: float | None) -> float | None:
    """The monotonic time by which a call given ``timeout`` seconds must return."""
    return None if timeout is None else time.monotonic() + _config.capped_seconds(timeout)


def _remaining(deadline: float | None) -> float | None:
    """What is left of ``deadline`` (``None``: no limit), never negative."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _as_id(value: object) -> str | None:
    """``value`` as an id string; ``None`` when empty or when ``str()`` raises."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    try:
        return str(value) or None
    except Exception:
        return None


def _describe(exc: BaseException) -> str:
    """An exception for a log line: its type and (short) message, never raising."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


def _hooks(before_send: object) -> tuple[Any, ...]:
    if before_send is None:
        return ()
    hooks = tuple(before_send) if isinstance(before_send, list | tuple) else (before_send,)
    for hook in hooks:
        if not callable(hook):
            raise ValueError(f"before_send must be a callable or a list of callables, got {hook!r}")
    return hooks


def _hook_name(hook: object) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__name__


# ---------------------------------------------------------------------- interpreter exit

# Every open client (built with the exit hook), held strongly until ``close()``: a client
# the application dropped without closing it still has queued events, and its flush
# thread keeps it alive anyway. Keyed by ``id`` (a held object's id cannot be reused).
# Plain dict operations, atomic under the GIL: no lock to recreate after a fork.
_live_clients: dict[int, Client] = {}
_MANY_CLIENTS = 10  # more open clients than this at once is almost always a leak
_warned_many: list[bool] = []


def _register(client: Client) -> None:
    """Hold ``client`` until it is closed; warn once per process when many are open."""
    _live_clients[id(client)] = client
    count = len(_live_clients)
    if count > _MANY_CLIENTS and not _warned_many:
        _warned_many.append(True)
        logger.warning(
            "%d PostHog clients are open at once: each keeps a flush thread and a "
            "connection until close() (or exit). Create one client and reuse it, or call "
            "close() on each client when done with it",
            count,
        )


def flush_on_exit() -> bool:
    """Flush every open client now, as at interpreter exit, for a process about to end
    where ``atexit`` will not run (Celery's prefork children: call it from
    ``worker_process_shutdown``; your own ``os._exit``). Each client gets its
    ``shutdown_timeout`` (they send in parallel) and stays open: later events are sent
    at once, within what is left of that time. ``True`` if everything was delivered.
    A process that lives on (a warm AWS Lambda) calls ``client.flush()`` instead."""
    return _close_all_at_exit()


def flush_open_clients() -> bool:
    """Flush every open client (in parallel, each within its ``shutdown_timeout``)
    without any exit state: for an ASGI lifespan shutdown, which a test client may run
    many times in one process. ``True`` if everything was delivered."""
    clients = [client for client in list(_live_clients.values()) if not client._closed]
    started = time.monotonic()
    for client in clients:
        _run_producers(client)  # e.g. OpenTelemetry's span batch under zero-code
        try:
            client._exporter.flush(0)  # every client starts sending now, in parallel
        except Exception:
            pass
    delivered = True
    for client in clients:
        remaining = max(started + client.shutdown_timeout - time.monotonic(), 0.0)
        delivered = client.flush(remaining) and delivered  # never raises
    return delivered


def _run_producers(client: Client) -> None:
    """Have what holds items for ``client`` (``_push_at_exit``) hand them over now."""
    for ref in list(client._exit_producers):
        producer = ref()
        if producer is not None:
            try:
                producer()
            except Exception:
                logger.debug("flushing into the client failed", exc_info=True)


def _close_all_at_exit() -> bool:
    """Flush every open client before the interpreter goes away (the flush threads are
    daemons, so they cannot hold the exit up), each within its ``shutdown_timeout``
    counted from the start of this hook (the clients send in parallel).

    atexit runs hooks in reverse order of registration, so the hooks of OpenTelemetry
    providers created earlier and ``logging.shutdown`` run *after* this one and may
    still hand the clients spans and records. The clients are therefore flushed here,
    not closed: they stay open until the interpreter ends, and every later flush or
    capture is delivered within what remains of the same deadline. A client that could
    not deliver in time is closed, counting what is left as ``shutdown``."""
    clients = [client for client in list(_live_clients.values()) if not client._closed]
    started = time.monotonic()
    for client in clients:
        client._exit_deadline = started + client.shutdown_timeout
        _run_producers(client)
        try:
            if "_flags" in client.__dict__:
                # No more polling: a poller still logging while the interpreter finalizes
                # can crash it. Loaded definitions stay usable.
                client._flags.close(0)
            client._exporter.flush(0)  # every client starts sending now, in parallel
        except Exception:
            pass
    delivered = True
    for client in clients:
        try:
            # A quarter of the time is kept for close() should this flush fail.
            remaining = max(started + client.shutdown_timeout - time.monotonic(), 0.0)
            delivered = client.flush(remaining * 0.75) and delivered
        except Exception:
            delivered = False
    return delivered


atexit.register(_close_all_at_exit)
