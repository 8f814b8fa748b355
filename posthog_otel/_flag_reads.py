"""The client's flag reads: one read path for the single-flag calls, the many-flag
calls, overrides, and the flag properties of ``send_feature_flags`` events.

The ``FlagsService`` (and the flag evaluator under it) is built on the first read, so
that an application that never reads a flag does not import or run any of it. No read
raises: unknown means ``None`` (or the default), failures are logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from ._fork import fork_safe_lock
from ._log import logger
from ._options import ClientConfig
from ._stats import StatsRecorder
from .export import Clock, HttpTransport, SystemClock
from .flags import FlagEvaluations, FlagResult, FlagValue

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._flags_worker import Overrides
    from .flags import Emit, FlagsService

__all__ = ["UNKNOWN", "FlagMethods", "FlagReadOptions", "FlagReads"]

UNKNOWN: Any = object()  # a local try's "only the server (or a wait) can tell"


class FlagReadOptions(TypedDict, total=False):
    """The keyword options of the flag reads (all optional)."""

    groups: Mapping[str, Any] | None
    """Group type → group key, for group flags."""
    person_properties: Mapping[str, Any] | None
    """Person properties for local evaluation (merged over the overrides)."""
    group_properties: Mapping[str, Mapping[str, Any]] | None
    """Group properties by group type, for local evaluation."""
    only_evaluate_locally: bool
    """Never make a ``/flags`` request: unknown when local evaluation cannot decide."""
    force_remote: bool
    """Ask ``/flags`` even when definitions are loaded."""
    disable_geoip: bool | None
    """Override the client's ``disable_geoip`` for the ``/flags`` request."""
    send_feature_flag_events: bool
    """Send ``$feature_flag_called`` (deduplicated per person, flag and value)."""
    device_id: str | None
    """The device id: sent to ``/flags``, and the bucketing value of flags bucketed by
    device (``bucketing_identifier: "device_id"``) in local evaluation."""


class FlagReads:
    """What ``Client``'s flag methods delegate to."""

    def __init__(
        self,
        config: ClientConfig,
        transport: HttpTransport,
        stats: StatsRecorder,
        clock: Clock | None,
        emit: Emit,
    ) -> None:
        self._config = config
        self._transport = transport
        self._stats = stats
        self._clock = clock or SystemClock()
        self._emit = emit
        self._disabled = config.disabled
        self._service: FlagsService | None = None
        self._lock = fork_safe_lock()
        if config.preload_feature_flags:
            # Built here, on the thread creating the client (never on the poller: an
            # import there at fork time hangs ``gunicorn --preload`` workers).
            self.service.start_loading()

    @property
    def service(self) -> FlagsService:
        """The flag service, built on first use."""
        service = self._service
        if service is None:
            with self._lock:
                service = self._service
                if service is None:
                    from .flags import FlagsService

                    config = self._config
                    service = self._service = FlagsService(
                        config.flags,
                        self._transport,
                        api_key=config.api_key,
                        secret_key=config.secret_key,
                        stats=self._stats,
                        clock=self._clock,
                        emit=self._emit,
                    )
        return service

    @property
    def disabled(self) -> bool:
        """A disabled client's reads answer defaults at once."""
        return self._disabled

    @property
    def built(self) -> bool:
        """Whether the service exists (else there is nothing to stop or flush)."""
        return self._service is not None

    # ------------------------------------------------------------------ one flag

    def result(
        self,
        key: str,
        distinct_id: object,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        force_remote: bool = False,
        disable_geoip: bool | None = None,
        send_feature_flag_events: bool = True,
        device_id: str | None = None,
    ) -> FlagResult | None:
        """The one read path of the single-flag calls (``FlagReadOptions`` as keywords:
        bound by the call, not looked up one by one, since this path is hot)."""
        if self._disabled:
            return None
        service = self._service or self.service
        return service.result(
            key,
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            force_remote,
            disable_geoip,
            send_feature_flag_events,
            None if device_id is None else _device_id(device_id),
        )

    def payload(
        self,
        key: str,
        distinct_id: object,
        match_value: FlagValue | None,
        options: FlagReadOptions,
        local: bool = False,
    ) -> Any:
        """The payload of the flag's value; with ``match_value``, that value's payload,
        looked up in the loaded definitions without evaluating the flag (no request), or
        when they do not have it, the payload of the evaluated value if it matches.
        ``local``: as ``result``'s; then ``_UNKNOWN`` when only a request could tell."""
        if self._disabled:
            return None
        if (
            match_value is not None
            and not options.get("force_remote")
            and not options.get("send_feature_flag_events")
        ):
            try:
                found, payload = self.service.payload_for(key, match_value)
            except Exception:
                logger.exception("the payload of %r could not be read", key)
                found, payload = False, None
            if found:
                return payload
        silent: FlagReadOptions = {"send_feature_flag_events": False, **options}
        if local:
            silent["only_evaluate_locally"] = True
        result = self.result(key, distinct_id, **silent)
        if result is None and local and not options.get("only_evaluate_locally"):
            return UNKNOWN
        if result is None or (match_value is not None and result.get_value() != match_value):
            return None
        return result.payload

    def answers_now(self, options: Mapping[str, Any]) -> bool:
        """Whether a local read cannot block (no first load to wait for, no
        ``force_remote``); always for a disabled client, which answers defaults."""
        if self._disabled:
            return True
        return not options.get("force_remote") and self.service.answers_now()

    # ------------------------------------------------------------------ many flags

    def evaluate(
        self, distinct_id: object, flag_keys: Sequence[str] | None, options: FlagReadOptions
    ) -> FlagEvaluations:
        """A snapshot of flags for one person: one local pass, at most one request."""
        if self._disabled:
            return FlagEvaluations(None, {})
        try:
            did, results = self._evaluate(distinct_id, flag_keys, options)
        except Exception:
            logger.exception("feature flags could not be evaluated")
            return FlagEvaluations(None, {})
        return self.service.snapshot(did, results, options.get("groups"))

    def complete_locally(
        self, distinct_id: object, flag_keys: Iterable[str] | None, options: Mapping[str, Any]
    ) -> tuple[str | None, dict[str, FlagResult]] | None:
        """One local pass that neither waits nor asks the server, when it answers every
        flag asked for (all of them without ``flag_keys``); else ``None`` (the async
        reads then run the full read on a worker thread)."""
        if self._disabled:
            return None, {}
        if not self.answers_now(options):
            return None
        try:
            definitions = self.service.definitions(wait=False)
            if definitions is None:
                return None
            keys = None if flag_keys is None else list(flag_keys)
            local = {**options, "only_evaluate_locally": True}
            did, results = self._evaluate(distinct_id, keys, local)
        except Exception:
            return None  # the full read (on the worker thread) reports it
        wanted = definitions.flags.keys() if keys is None else keys
        if did is None or all(k in results for k in wanted):
            return did, results
        return None

    def snapshot(
        self, did: str | None, results: dict[str, FlagResult], options: Mapping[str, Any]
    ) -> FlagEvaluations:
        if self._disabled:
            return FlagEvaluations(None, {})
        return self.service.snapshot(did, results, options.get("groups"))

    def all_results(
        self, distinct_id: object, options: Mapping[str, Any]
    ) -> Iterable[tuple[str, FlagResult]]:
        """The results of one evaluation pass, without a snapshot (sends no events)."""
        if self._disabled:
            return ()
        try:
            _, results = self._evaluate(distinct_id, options.get("flag_keys"), options)
        except Exception:
            logger.exception("feature flags could not be evaluated")
            return ()
        return results.items()

    def all_flags(self, distinct_id: object, options: Mapping[str, Any]) -> dict[str, FlagValue]:
        return {k: r.get_value() for k, r in self.all_results(distinct_id, options)}

    def all_flags_and_payloads(
        self, distinct_id: object, options: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        results = list(self.all_results(distinct_id, options))
        return {
            "featureFlags": {k: r.get_value() for k, r in results},
            "featureFlagPayloads": {
                k: r.payload for k, r in results if r.enabled and r.payload is not None
            },
        }

    def _evaluate(
        self, distinct_id: object, flag_keys: Iterable[str] | None, options: Mapping[str, Any]
    ) -> tuple[str | None, dict[str, FlagResult]]:
        return self.service.evaluate(
            distinct_id,
            flag_keys=flag_keys,
            groups=options.get("groups"),
            person_properties=options.get("person_properties"),
            group_properties=options.get("group_properties"),
            only_evaluate_locally=options.get("only_evaluate_locally", False),
            force_remote=options.get("force_remote", False),
            disable_geoip=options.get("disable_geoip"),
            device_id=_device_id(options.get("device_id")),
        )

    def clear_cache(self, distinct_id: object) -> None:
        """Empty the opt-in result cache (one distinct id's entries, or all)."""
        if self._service is not None:
            self._service.clear_cache(None if distinct_id is None else str(distinct_id))

    # ------------------------------------------------------------------ definitions

    def reload(self) -> None:
        if self._disabled:
            return
        try:
            self.service.reload()
        except Exception:
            logger.exception("reloading flag definitions failed")

    def loaded(self) -> bool:
        """Whether definitions are loaded now (never waits, never raises)."""
        try:
            return self.service.definitions(wait=False) is not None
        except Exception:
            return False

    def close(self, timeout: float | None) -> None:
        """Stop the poller (if the service was ever built)."""
        if self._service is not None:
            self._service.close(timeout)

    # ------------------------------------------------------------------ events' flags

    def for_event(
        self, name: str, distinct_id: object, groups: Mapping[str, Any] | None
    ) -> FlagEvaluations | None:
        """``send_feature_flags`` with loaded definitions: local evaluation, no request.
        Whatever goes wrong, the event goes without flag properties (counted)."""
        try:
            if self.service.definitions(wait=False) is None:
                return None
            options = {"groups": groups, "only_evaluate_locally": True}
            did, results = self._evaluate(distinct_id, None, options)
            return FlagEvaluations(did, results)
        except Exception as exc:
            self._stats.correct(
                "flags_unavailable",
                f"send_feature_flags: flags could not be evaluated ({type(exc).__name__}); "
                f"{name!r} sent without flag properties",
            )
            return None

    def fetch_for_event(
        self,
        distinct_id: str,
        groups: Mapping[str, Any],
        overrides: Overrides,
        device_id: str | None,
    ) -> dict[str, Any] | None:
        """The flags worker's request: ``$feature/*`` properties from one ``/flags``
        call, with the overrides and device id of the identity context the event was
        captured in (the worker's thread has none of its own)."""
        person, group_properties = overrides if overrides is not None else (None, None)
        options = {
            "groups": groups,
            "person_properties": person,
            "group_properties": group_properties,
            "force_remote": True,
            "device_id": device_id,
        }
        did, results = self._evaluate(distinct_id, None, options)
        return FlagEvaluations(did, results).event_properties() if results else None

    # ------------------------------------------------------------------ overrides
    # A disabled client stores none (and builds no service for them).

    def set_person_overrides(self, properties: object) -> None:
        if not self._disabled:
            self.service.set_person_overrides(properties)

    def set_group_overrides(self, properties: object, group_type_properties: object) -> None:
        if not self._disabled:
            self.service.set_group_overrides(properties, group_type_properties)

    def reset_person_overrides(self) -> None:
        if not self._disabled:
            self.service.reset_person_overrides()

    def reset_group_overrides(self, group_type: object) -> None:
        if not self._disabled:
            self.service.reset_group_overrides(group_type)

    def context_overrides(self) -> Overrides:
        return self.service.context_overrides()


class FlagMethods:
    """The flag half of ``Client``'s API, over its ``FlagReads`` (``_flag_reads``).

    The three single-flag reads spell their options out as keyword parameters: they
    are the hot path (a read is about a microsecond), and binding keywords straight
    into parameters costs a fraction of packing and unpacking ``**options``. The
    other methods take ``FlagReadOptions`` as ``**options``.
    """

    _flag_reads: FlagReads

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
        device_id: str | None = None,
    ) -> FlagResult | None:
        """The flag's value, payload and provenance; ``None`` if it cannot be known.

        Local evaluation first (when definitions are loaded), one ``/flags`` request
        otherwise. Never raises; with no distinct id (argument or identity context) no
        request is made and no event is sent. The options: see ``FlagReadOptions``.
        """
        return self._flag_reads.result(
            key,
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            force_remote,
            disable_geoip,
            send_feature_flag_events,
            device_id,
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
        device_id: str | None = None,
    ) -> FlagValue | None:
        """The variant, ``True``/``False``, or ``None`` when unknown."""
        result = self._flag_reads.result(
            key,
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            force_remote,
            disable_geoip,
            send_feature_flag_events,
            device_id,
        )
        return None if result is None else result.get_value()

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
        device_id: str | None = None,
    ) -> bool:
        """Whether the flag is on (any variant counts); ``default_value`` when unknown."""
        result = self._flag_reads.result(
            key,
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            force_remote,
            disable_geoip,
            send_feature_flag_events,
            device_id,
        )
        return default_value if result is None else result.enabled

    feature_enabled = is_feature_enabled

    def get_feature_flag_payload(
        self,
        key: str,
        distinct_id: object = None,
        *,
        match_value: FlagValue | None = None,
        **options: Unpack[FlagReadOptions],
    ) -> Any:
        """The JSON payload of the flag's value (silent unless
        ``send_feature_flag_events=True``)."""
        return self._flag_reads.payload(key, distinct_id, match_value, options)

    def evaluate_flags(
        self,
        distinct_id: object = None,
        *,
        flag_keys: Sequence[str] | None = None,
        **options: Unpack[FlagReadOptions],
    ) -> FlagEvaluations:
        """A snapshot of flags for one person: one local pass, at most one request."""
        return self._flag_reads.evaluate(distinct_id, flag_keys, options)

    def get_all_flags(self, distinct_id: object = None, **options: Any) -> dict[str, FlagValue]:
        """Every flag's value for this person (``flag_keys=`` to scope)."""
        return self._flag_reads.all_flags(distinct_id, options)

    def get_all_flags_and_payloads(
        self, distinct_id: object = None, **options: Any
    ) -> dict[str, dict[str, Any]]:
        """``{"featureFlags": {...}, "featureFlagPayloads": {...}}`` (payloads of enabled
        flags, decoded from JSON)."""
        return self._flag_reads.all_flags_and_payloads(distinct_id, options)

    def reload_feature_flags(self) -> None:
        """Fetch flag definitions now (when local evaluation is configured)."""
        self._flag_reads.reload()

    def clear_flag_cache(self, distinct_id: object = None) -> None:
        """Empty the result cache (``flag_result_cache_ttl``): one person's, or all."""
        self._flag_reads.clear_cache(distinct_id)

    # Overrides (PFF): inside an identity context they belong to it (they end with it,
    # merged over the client-level ones). Invalid input is ignored (counted in
    # ``stats.corrected``, warned about); a disabled client stores none.
    # ``reload_feature_flags`` is accepted for the contract's signature: a server has
    # nothing to reload, the overrides apply from the next read (no request is made).

    def set_person_properties_for_flags(
        self, properties: Mapping[str, Any], reload_feature_flags: bool = True
    ) -> None:
        """Person properties used by later flag evaluations (merged under the call's)."""
        self._flag_reads.set_person_overrides(properties)

    def set_group_properties_for_flags(
        self,
        group_properties: Mapping[str, Mapping[str, Any]] | str,
        properties: Mapping[str, Any] | bool | None = None,
        reload_feature_flags: bool = True,
    ) -> None:
        """Group properties for later flag evaluations: ``{group_type: properties}``, or
        ``(group_type, properties)``."""
        self._flag_reads.set_group_overrides(group_properties, properties)

    def reset_person_properties_for_flags(self, reload_feature_flags: bool = True) -> None:
        """Forget the person overrides (of the identity context, when inside one)."""
        self._flag_reads.reset_person_overrides()

    def reset_group_properties_for_flags(
        self, group_type: str | None = None, reload_feature_flags: bool = True
    ) -> None:
        """Forget the group overrides: all of them, or ``group_type``'s only."""
        self._flag_reads.reset_group_overrides(group_type)


def _device_id(value: object) -> str | None:
    """A device id as posthog uses it: an empty one is none, any other a string."""
    if not value:
        return None
    return value if type(value) is str else str(value)
