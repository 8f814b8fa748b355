"""The client's configuration as data: one frozen ``ClientConfig`` (with its delivery and
flag parts) built and validated here, from the constructor's arguments and the
environment. A bad argument raises ``ValueError`` naming it (a programmer's mistake); a
bad environment value warns and falls back (an operator's)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import _config, _shutdown
from ._exc_event import ExceptionsConfig
from ._log import logger
from ._logs_config import LogsConfig, checked_logs_config
from ._traces_config import TracesConfig, checked_traces_config
from .export import DEFAULT_SPOOL_BYTES, ExporterConfig
from .flags import FlagsConfig

if TYPE_CHECKING:
    import httpx

Event = dict[str, Any]
BeforeSend = Callable[[Event], "Event | None"]
OnError = Callable[[Exception, list[Event]], None]

DEFAULT_MAX_BATCH_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class ClientConfig:
    """Everything a ``Client`` was configured with, validated; read it as
    ``client.config``. Secrets are kept out of the repr."""

    api_key: str
    host: str  # without credentials: safe to show
    masked_host: str  # the host as given, credentials masked
    transport_host: str = field(repr=False)  # the host as given, credentials included
    secret_key: str | None = field(repr=False)
    disabled: bool
    debug: bool
    gzip: bool
    historical_migration: bool
    disable_geoip: bool
    super_properties: Mapping[str, Any]
    before_send: tuple[BeforeSend, ...]
    on_error: OnError | None
    shutdown_timeout: float
    flush_on_sigterm: bool
    http_client: httpx.Client | None = field(repr=False)
    preload_feature_flags: bool
    """Load flag definitions in the background from the start (else on the first read)."""
    delivery: ExporterConfig
    flags: FlagsConfig
    exceptions: ExceptionsConfig = field(default_factory=ExceptionsConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)  # PostHog Logs (LOG-19)
    traces: TracesConfig | None = None
    """PostHog Traces (TRC-28): ``None`` leaves the native span API off (the traces
    lane then has the defaults, for the OpenTelemetry exporters' ``traces=True``)."""
    capture_mode: str = "v0"
    """``"v0"`` (``/batch/``) or ``"v1"`` (``/i/v1/analytics/events``, per-event results)."""
    spool_path: str | None = None
    """The durable spool of the analytics lane (SQLite), or ``None``: memory only."""
    max_spool_bytes: int = DEFAULT_SPOOL_BYTES


def client_config(
    api_key: str | None,
    *,
    host: str | None,
    secret_key: str | None,
    personal_api_key: str | None,
    flush_at: int,
    flush_interval: float,
    max_queue_size: int,
    max_queue_bytes: int,
    max_batch_size: int,
    max_batch_bytes: int,
    gzip: bool,
    timeout: float,
    max_retries: int,
    sync_mode: bool,
    disabled: bool,
    debug: bool,
    before_send: BeforeSend | Sequence[BeforeSend] | None,
    on_error: OnError | None,
    super_properties: Mapping[str, Any] | None,
    disable_geoip: bool,
    historical_migration: bool,
    feature_flags_poll_interval: float,
    feature_flags_request_timeout: float,
    feature_flags_request_max_retries: int,
    feature_flags_initial_load_timeout: float,
    shutdown_timeout: float,
    flush_on_sigterm: bool | None,
    max_retry_cycles: int,
    http_client: httpx.Client | None,
    flag_definition_cache_provider: object | None,
    flag_result_cache_ttl: float | None,
    preload_feature_flags: bool | None = None,
    enable_exception_autocapture: bool = False,
    in_app_include: Sequence[str] = (),
    in_app_exclude: Sequence[str] = (),
    logs: LogsConfig | None = None,
    traces: TracesConfig | bool | None = None,
    capture_mode: str | None = None,
    spool_path: str | os.PathLike[str] | None = None,
    max_spool_bytes: int = DEFAULT_SPOOL_BYTES,
) -> ClientConfig:
    """The ``ClientConfig`` for ``Client(...)``'s arguments (same names, same meaning)."""
    if api_key is not None and not isinstance(api_key, str):
        raise ValueError(f"api_key must be a string, got {type(api_key).__name__}")
    key = (api_key or "").strip() or _config.env_first(*_config.API_KEY_ENV)
    full_host = _config.resolve_host(host)
    if secret_key is None:
        secret_key = personal_api_key
    # A key given in code means flags will be read: their definitions load from the start.
    # One from the environment may reach a logging-only process: it loads on first read.
    explicit_secret = bool(isinstance(secret_key, str) and secret_key.strip())
    if secret_key is None:
        secret_key = _config.env_first(*_config.SECRET_KEY_ENV)
    if super_properties is not None and not isinstance(super_properties, Mapping):
        raise ValueError("super_properties must be a mapping")
    if flag_result_cache_ttl is not None:
        _config.check_float("flag_result_cache_ttl", flag_result_cache_ttl)
    check_int, check_float = _config.check_int, _config.check_float
    delivery = ExporterConfig(
        flush_at=check_int("flush_at", flush_at, 1),
        flush_interval=check_float("flush_interval", flush_interval, positive=True),
        max_queue_size=check_int("max_queue_size", max_queue_size, 1),
        max_queue_bytes=check_int("max_queue_bytes", max_queue_bytes, 1),
        max_batch_size=check_int("max_batch_size", max_batch_size, 1),
        max_batch_bytes=check_int("max_batch_bytes", max_batch_bytes, 64 * 1024),
        timeout=check_float("timeout", timeout, positive=True),
        max_retries=check_int("max_retries", max_retries, 0),
        max_retry_cycles=check_int("max_retry_cycles", max_retry_cycles, 1),
        sync_mode=bool(sync_mode),
    )
    flags = FlagsConfig(
        poll_interval=check_float(
            "feature_flags_poll_interval", feature_flags_poll_interval, positive=True
        ),
        request_timeout=check_float(
            "feature_flags_request_timeout", feature_flags_request_timeout, positive=True
        ),
        max_retries=check_int(
            "feature_flags_request_max_retries", feature_flags_request_max_retries, 0
        ),
        initial_load_timeout=check_float(
            "feature_flags_initial_load_timeout", feature_flags_initial_load_timeout
        ),
        cache_provider=flag_definition_cache_provider,  # type: ignore[arg-type]
        result_cache_ttl=flag_result_cache_ttl,
        disable_geoip=bool(disable_geoip),
    )
    secret_key = (secret_key or "").strip() or None
    if secret_key:
        _warn_if_cleartext(_config.split_credentials(full_host)[0])
    if not key and not disabled:
        logger.warning(
            "no PostHog API key (api_key, POSTHOG_API_KEY or POSTHOG_PROJECT_API_KEY): "
            "the client is disabled and drops every event"
        )
    return ClientConfig(
        api_key=key or "",
        host=_config.split_credentials(full_host)[0],
        masked_host=_config.mask_credentials(full_host),
        transport_host=full_host,
        secret_key=secret_key,
        disabled=bool(disabled) or not key,
        debug=bool(debug),
        gzip=bool(gzip),
        historical_migration=bool(historical_migration),
        disable_geoip=bool(disable_geoip),
        super_properties=MappingProxyType(dict(super_properties or {})),
        before_send=_hooks(before_send),
        on_error=_config.check_callable("on_error", on_error),  # type: ignore[arg-type]
        shutdown_timeout=check_float("shutdown_timeout", shutdown_timeout),
        flush_on_sigterm=_shutdown.flush_on_sigterm_default()
        if flush_on_sigterm is None
        else bool(flush_on_sigterm),
        http_client=http_client,
        preload_feature_flags=bool(
            secret_key
            and not disabled
            and key
            and (explicit_secret if preload_feature_flags is None else preload_feature_flags)
        ),
        delivery=delivery,
        flags=flags,
        exceptions=ExceptionsConfig(
            autocapture=bool(enable_exception_autocapture),
            in_app_include=_module_prefixes("in_app_include", in_app_include),
            in_app_exclude=_module_prefixes("in_app_exclude", in_app_exclude),
        ),
        logs=checked_logs_config(logs),
        traces=checked_traces_config(traces),
        capture_mode=_capture_mode(capture_mode),
        spool_path=_spool_path(spool_path),
        max_spool_bytes=check_int("max_spool_bytes", max_spool_bytes, 64 * 1024),
    )


def _spool_path(value: object) -> str | None:
    """``spool_path``, else ``POSTHOG_SPOOL_PATH``, else ``None`` (no spool)."""
    if value is None:
        return _config.env_first("POSTHOG_SPOOL_PATH")
    if not isinstance(value, str | os.PathLike):
        raise ValueError(f"spool_path must be a path, got {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"spool_path must be a non-empty path, got {value!r}")
    return path


# What ``capture_mode`` / ``POSTHOG_CAPTURE_MODE`` accept (the official SDK's spellings).
_CAPTURE_MODES = {"v0": "v0", "legacy": "v0", "v1": "v1", "analytics_v1": "v1"}


def _capture_mode(value: object) -> str:
    """``capture_mode``, else ``POSTHOG_CAPTURE_MODE``, else ``"v0"``."""
    if value is not None:
        mode = _CAPTURE_MODES.get(value.strip().lower()) if isinstance(value, str) else None
        if mode is None:
            raise ValueError(f"capture_mode must be 'v0' or 'v1', got {value!r}")
        return mode
    env = _config.env_first("POSTHOG_CAPTURE_MODE")
    if env is None:
        return "v0"
    mode = _CAPTURE_MODES.get(env.strip().lower())
    if mode is None:
        logger.warning("POSTHOG_CAPTURE_MODE=%r is not 'v0' or 'v1'; using v0", env)
        return "v0"
    return mode


def _module_prefixes(name: str, value: object) -> tuple[str, ...]:
    """Module name prefixes (``in_app_include``/``in_app_exclude``) as a tuple."""
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list of module names, got {value!r}")
    if not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{name} must hold non-empty module names, got {value!r}")
    return tuple(value)


def _hooks(before_send: object) -> tuple[BeforeSend, ...]:
    """``before_send`` as a tuple of callables (one hook, or a list run in order)."""
    if before_send is None:
        return ()
    hooks = tuple(before_send) if isinstance(before_send, list | tuple) else (before_send,)
    for hook in hooks:
        if not callable(hook):
            raise ValueError(f"before_send must be a callable or a list of callables, got {hook!r}")
    return hooks


_warned_cleartext: list[bool] = []


def _warn_if_cleartext(host: str) -> None:
    """Warn (once per process) when the secret key would cross the network in clear
    text: plain ``http://`` to a host that is not this machine."""
    from urllib.parse import urlsplit

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
