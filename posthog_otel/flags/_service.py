"""The flag service behind ``Client``: identity, local evaluation first, one remote
call when needed, exposure events deduplicated, property overrides.

It knows no client: it gets a transport, its ``FlagsConfig``, the stats to count in, a
clock and ``emit``, the one way its ``$feature_flag_called`` events leave it. Its
public methods are the seam for integrations (the OpenFeature provider reaches it
through ``Client.flags``)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .._context import _current
from .._fork import fork_safe_lock, import_fork_safe, reset_in_child
from .._log import logger
from .._stats import StatsRecorder
from ..export import Clock, HttpTransport
from ..messages import Capture
from ._compiled import CompiledFlag, build_local_result, payload_of
from ._config import FlagsConfig
from ._errors import Unresolved
from ._evaluator import Definitions
from ._explain import explain_flag
from ._loader import DefinitionsLoader
from ._overrides import FlagOverrides, group_inputs
from ._remote import RemoteAnswer, RemoteFlags, ResultCache
from ._results import FlagEvaluations, FlagResult, FlagValue

__all__ = ["MINIMAL_EVENT_PROPERTIES", "Emit", "FlagsService"]

# A ``/flags`` response's request id and evaluation time (``None``: no response).
Answered = tuple[str | None, int | None] | None
# How the service sends a ``$feature_flag_called`` event: ``emit(message, keep)``, with
# ``keep`` the property names of the minimal form (``MINIMAL_EVENT_PROPERTIES``: super
# and context properties left out too) or ``None`` for the full event. The client's
# ``_emit_flag_event`` is one; a list's ``append`` of pairs is another (tests).
Emit = Callable[[Capture, frozenset[str] | None], object]


class DefinitionsListener(Protocol):
    def definitions_changed(self, keys: list[str]) -> None: ...

    def definitions_refreshed(self, ok: bool) -> None: ...


def changed_keys(previous: Definitions | None, current: Definitions | None) -> list[str]:
    """Keys whose definition was added, removed or edited between two loads."""
    before = {} if previous is None else {f["key"]: f for f in previous.raw_flags if "key" in f}
    after = {} if current is None else {f["key"]: f for f in current.raw_flags if "key" in f}
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# What a minimal $feature_flag_called keeps (FFT-08) when the server asks for minimal
# events and the flag is known to have no experiment.
MINIMAL_EVENT_PROPERTIES = frozenset(
    {
        "$feature_flag",
        "$feature_flag_response",
        "$feature_flag_has_experiment",
        "$feature_flag_id",
        "$feature_flag_version",
        "$feature_flag_reason",
        "$feature_flag_request_id",
        "$feature_flag_evaluated_at",
        "$feature_flag_error",
        "locally_evaluated",
        "$groups",
        "$process_person_profile",
        "$session_id",
        "$lib",
        "$lib_version",
        "$is_server",
        "$geoip_disable",
        "$referring_domain",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "gad_source",
        "mc_cid",
        "gclid",
        "fbclid",
    }
)
_EMPTY: dict[str, Any] = {}
_TRACKER_MAX_IDS = 50_000
# Exposures remembered per distinct id ((flag, value, groups) each): group keys often come
# from requests, so one id must not grow without bound. Past this, it starts over.
_SEEN_PER_ID_MAX = 1_000
_KNOWN_MISSING_MAX = 10_000  # negative knowledge: flag keys the project does not have


class FlagsService:
    """Feature flags for one project key: definitions (polled with a secret key),
    local evaluation, ``/flags`` requests, exposure events, property overrides.

    ``clock`` is public: integrations time their own state with it (the provider's
    stale grace period), so that a test's ``FakeClock`` drives both."""

    def __init__(
        self,
        config: FlagsConfig,
        transport: HttpTransport,
        *,
        api_key: str,
        secret_key: str | None,
        stats: StatsRecorder,
        clock: Clock,
        emit: Emit,
    ) -> None:
        # Our threads (poller, flags worker) send requests with httpx: import it here, on
        # the caller's thread, so that no background thread imports where a fork can land.
        import_fork_safe("httpx")
        self.config = config
        self.clock = clock
        self._stats = stats
        self._emit = emit
        self.remote = RemoteFlags(
            transport,
            api_key,
            timeout=config.request_timeout,
            max_retries=config.max_retries,
            clock=clock,
        )
        self.loader: DefinitionsLoader | None = None
        if secret_key:
            self.loader = DefinitionsLoader(
                transport,
                api_key=api_key,
                secret_key=secret_key,
                poll_interval=config.poll_interval,
                clock=clock,
                cache_provider=config.cache_provider,
                on_change=self._definitions_changed,
                on_refreshed=self._refreshed,
                on_restart=stats.thread_restarted,
            )
        self._listeners: list[DefinitionsListener] = []
        self._first_load_done = False
        self._first_wait_deadline: float | None = None
        ttl = config.result_cache_ttl
        self.cache = ResultCache(ttl, clock) if ttl else None
        self.overrides = FlagOverrides(stats)
        self._seen: OrderedDict[str, set[tuple[Any, ...]]] = OrderedDict()
        self._seen_lock = fork_safe_lock()
        self._known_missing: set[str] = set()
        reset_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # The poller thread did not survive the fork: the next read starts it again.
        self._first_load_done = False
        self._first_wait_deadline = None

    # ---------------------------------------------------------------- definitions

    def definitions(self, *, wait: bool = True) -> Definitions | None:
        """The loaded definitions; the first read waits (bounded) for the first load.

        Only the first: once its wait is over, loaded or not, later reads answer from what
        is there (or remotely) without waiting. Reads that arrive during the first wait
        share its deadline."""
        loader = self.loader
        if loader is None:
            return None
        if not self._first_load_done:  # after the first wait, no locks on this path
            if wait:
                deadline = self._first_wait_deadline
                if deadline is None:
                    deadline = time.monotonic() + self.config.initial_load_timeout
                    self._first_wait_deadline = deadline
                loader.wait_loaded(max(0.0, deadline - time.monotonic()))
                self._first_load_done = True
            else:
                loader.start()
        return loader.definitions

    def answers_now(self) -> bool:
        """Whether a local read would not wait: no first load to wait for (or it is
        over). The async reads evaluate on the event loop only then."""
        loader = self.loader
        return loader is None or self._first_load_done or loader.loaded

    def _definitions_changed(
        self, previous: Definitions | None, current: Definitions | None
    ) -> None:
        with self._seen_lock:
            self._seen.clear()  # flag state changed: exposures may differ now (FFT-04)
        if self.cache is not None:
            self.cache.clear()
        changed = changed_keys(previous, current)
        for listener in list(self._listeners):
            listener.definitions_changed(changed)

    def _refreshed(self, ok: bool) -> None:
        if ok:
            self._known_missing.clear()  # a deleted flag: one probe per refresh (EVF-06)
        for listener in list(self._listeners):
            listener.definitions_refreshed(ok)

    def wait_loaded(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the first definitions (starting the
        poller); whether they are loaded. ``True`` at once without a secret key: there
        is nothing to load, every read is remote."""
        return True if self.loader is None else self.loader.wait_loaded(timeout)

    def add_listener(self, listener: DefinitionsListener) -> None:
        """Be told of definition changes (``definitions_changed(keys)``, the keys added,
        removed or edited) and of every refresh's outcome (``definitions_refreshed(ok)``),
        on the poller's thread (the OpenFeature provider's events)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: DefinitionsListener) -> None:
        """Stop telling ``listener``; unknown listeners are ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start_loading(self) -> None:
        """Start the poller now (``preload_feature_flags``): the first read then finds
        the definitions loaded, or waits only for what is left of their first fetch."""
        if self.loader is not None:
            self.loader.start()

    def reload(self) -> None:
        """Fetch the definitions now, on the caller's thread. It counts as the first
        load: the next read never waits for another fetch (the poller is started, its
        next fetch one poll interval away)."""
        if self.loader is not None:
            self.loader.refresh_now()
            self._first_load_done = True

    def close(self, timeout: float | None = None) -> None:
        """Stop the poller, waiting at most ``timeout`` seconds for it."""
        if self.loader is not None:
            self.loader.close(timeout)
        if self.cache is not None:
            self.cache.clear()
        with self._seen_lock:
            self._seen.clear()

    # ---------------------------------------------------------------- inputs

    def inputs(
        self,
        distinct_id: object,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
    ) -> tuple[str | None, Mapping[str, Any], Mapping[str, Any], Mapping[str, Mapping[str, Any]]]:
        """What a read evaluates with: ``(distinct_id, groups, person_properties,
        group_properties)``. The distinct id is the argument, else the identity
        context's (``None`` when neither has one); the property overrides
        (``set_*_properties_for_flags``, the client's and the identity contexts') are
        merged under the call's own, which win; each group's properties get its
        ``$group_key``. The mappings returned are read-only."""
        did, person, group_overrides = self.overrides.person_inputs(distinct_id, person_properties)
        groups_, group_props = group_inputs(groups, group_properties, group_overrides)
        return did, groups_, person, group_props

    # ---------------------------------------------------------------- single flag

    def result(
        self,
        key: str,
        distinct_id: object,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        only_evaluate_locally: bool,
        force_remote: bool,
        disable_geoip: bool | None,
        send_events: bool,
        device_id: str | None = None,
    ) -> FlagResult | None:
        """The one path of every single-flag read (positional: it is hot). Local when
        the definitions decide, else one request; never raises: ``None`` when unknown.
        Without ``device_id``, the identity context's (if any)."""
        try:
            if device_id is None:
                device_id = _context_device_id()
            did, person, group_overrides = self.overrides.person_inputs(
                distinct_id, person_properties
            )
            if did is None:
                return None  # no identity: no request, no exposure (HDR-08)
            definitions = None if force_remote else self.definitions()
            flag = None if definitions is None else definitions.flags.get(key)
            result = None
            groups_: Mapping[str, Any] | None = None  # built when needed (a group flag...)
            group_props: Mapping[str, Mapping[str, Any]] = _EMPTY
            if flag is not None:
                assert definitions is not None
                if flag.uses_groups:
                    groups_, group_props = group_inputs(groups, group_properties, group_overrides)
                # As in ``evaluate``, inlined: this is the hot single-flag read.
                try:
                    value = definitions.decide(
                        flag, did, groups_ or _EMPTY, person, group_props, device_id
                    )
                except Unresolved:
                    value = None
                except Exception:  # a bug must not break the read; it is reported
                    logger.exception("local evaluation of %r failed", key)
                    value = None
                if value is not None:
                    result = flag.results.get(value) or _unforeseen(definitions, flag, value)
            error: str | None = None
            answered: Answered = None
            if groups_ is None and (send_events or (result is None and not only_evaluate_locally)):
                groups_, group_props = group_inputs(groups, group_properties, group_overrides)
            if result is None and not only_evaluate_locally:
                assert groups_ is not None
                result, error, cached, answered = self.ask(
                    key, did, groups_, person, group_props, disable_geoip, device_id
                )
                if cached:
                    return result  # from the opt-in cache: no request, already exposed
            if send_events and (result is not None or error is not None):
                assert groups_ is not None
                self.expose(did, key, result, groups_, error, answered=answered)
            return result
        except Exception:
            logger.exception("feature flag %r could not be evaluated", key)
            return None

    def ask(
        self,
        key: str,
        did: str,
        groups: Mapping[str, Any],
        person: Mapping[str, Any],
        group_props: Mapping[str, Mapping[str, Any]],
        disable_geoip: bool | None = None,
        device_id: str | None = None,
    ) -> tuple[FlagResult | None, str | None, bool, Answered]:
        """The server's answer for ``key`` (inputs from ``inputs``), through the opt-in
        result cache: ``(result, error, from_cache, answered)``, the error as
        ``$feature_flag_error`` reports it, ``answered`` the response's request id and
        evaluation time (for the exposure of a flag it did not have). No exposure (see
        ``expose``)."""
        cache, cache_key = self.cache, None
        if cache is not None:
            cache_key = cache.key(did, groups, person, group_props, device_id)
            cached = cache.get(cache_key, key)
            if cached is not None:
                return cached, None, True, None
        answer = self._remote(did, groups, person, group_props, disable_geoip, [key], device_id)
        result = answer.flags.get(key)
        error = answer.error or (None if result is not None else "flag_missing")
        if answer.errors_while_computing:
            error = ",".join(e for e in ("errors_while_computing_flags", error) if e)
        if cache is not None and answer.error is None:
            complete = not answer.errors_while_computing
            cache.put(cache_key, answer.flags, [key], complete=complete)
        return result, error, False, (answer.request_id, answer.evaluated_at)

    def explain(
        self,
        key: str,
        did: str,
        groups: Mapping[str, Any],
        person: Mapping[str, Any],
        group_props: Mapping[str, Mapping[str, Any]],
    ) -> tuple[FlagResult, str] | None:
        """Local evaluation that also says how the value was decided, for inputs from
        ``inputs``: ``(result, decision)``, the decision one of ``"inactive"``,
        ``"enrollment"``, ``"holdout"``, ``"no_match"``, or how the matched condition
        decides (``"targeted"``, ``"split"``, ``"default"``, ``"static"``). ``None`` when
        only the server can decide. No exposure event (see ``expose``)."""
        definitions = self.definitions()
        flag = definitions.flags.get(key) if definitions is not None else None
        if definitions is None or flag is None:
            return None
        try:
            explained = explain_flag(definitions, flag, did, groups, person, group_props)
        except Unresolved:
            return None
        return explained.result, explained.decision

    def payload_for(self, key: str, value: FlagValue) -> tuple[bool, Any]:
        """``(True, payload)`` of ``value`` from the loaded definition of ``key``, read
        without evaluating the flag (``match_value``, GFP-02); ``(False, None)`` when the
        definitions do not have the flag (then only an evaluation can tell)."""
        definitions = self.definitions()
        flag = None if definitions is None else definitions.flags.get(key)
        return (False, None) if flag is None else (True, payload_of(flag, value))

    def clear_cache(self, distinct_id: str | None = None) -> None:
        """Forget the opt-in result cache: everything, or one distinct id's."""
        if self.cache is not None:
            self.cache.clear(distinct_id)

    def _remote(
        self,
        did: str,
        groups: Mapping[str, Any],
        person: Mapping[str, Any],
        group_props: Mapping[str, Mapping[str, Any]],
        disable_geoip: bool | None,
        keys: list[str] | None,
        device_id: str | None,
    ) -> RemoteAnswer:
        return self.remote.evaluate(
            did,
            groups=groups,
            person_properties=person,
            group_properties=group_props,
            disable_geoip=self.config.disable_geoip if disable_geoip is None else disable_geoip,
            flag_keys=keys,
            device_id=device_id,
        )

    # ---------------------------------------------------------------- many flags

    def evaluate(
        self,
        distinct_id: object,
        *,
        flag_keys: Iterable[str] | None,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        only_evaluate_locally: bool,
        force_remote: bool,
        disable_geoip: bool | None,
        device_id: str | None = None,
    ) -> tuple[str | None, dict[str, FlagResult]]:
        """One local pass and at most one request for the (scoped) flags."""
        if device_id is None:
            device_id = _context_device_id()
        did, groups_, person, group_props = self.inputs(
            distinct_id, groups, person_properties, group_properties
        )
        keys = None if flag_keys is None else list(dict.fromkeys(flag_keys))
        if did is None or keys == []:
            return did, {}
        results: dict[str, FlagResult] = {}
        definitions = None if force_remote else self.definitions()
        unresolved: list[str] = []
        if definitions is not None:
            flags = definitions.flags
            for key in keys if keys is not None else list(flags):
                flag = flags.get(key)
                local = None
                if flag is not None:
                    # ``Definitions.evaluate_flag`` picks the shortcut or the general path.
                    try:
                        value = definitions.decide(
                            flag, did, groups_, person, group_props, device_id
                        )
                    except Unresolved:
                        value = None
                    except Exception:  # a bug must not break the read; it is reported
                        logger.exception("local evaluation of %r failed", key)
                        value = None
                    if value is not None:
                        local = flag.results.get(value) or _unforeseen(definitions, flag, value)
                if local is None:
                    unresolved.append(key)
                else:
                    results[key] = local
        if definitions is not None and unresolved and self._known_missing:
            # Keys PostHog said it does not have, since the last refresh: no new probe.
            unresolved = [
                k for k in unresolved if k in definitions.flags or k not in self._known_missing
            ]
        if (definitions is None or unresolved) and not only_evaluate_locally:
            scope = keys if keys is not None else (None if definitions is None else unresolved)
            cache, cache_key = self.cache, None
            if cache is not None:  # the opt-in result cache answers first (FFC)
                cache_key = cache.key(did, groups_, person, group_props, device_id)
                cached = cache.get_many(cache_key, scope)
                if cached is not None:
                    for key, remote in cached.items():
                        results.setdefault(key, remote)
                    return did, results
            answer = self._remote(
                did, groups_, person, group_props, disable_geoip, scope, device_id
            )
            if cache is not None and answer.error is None:
                cache.put(
                    cache_key, answer.flags, scope, complete=not answer.errors_while_computing
                )
            if answer.error is None:
                for key, remote in answer.flags.items():
                    # A locally resolved value is never replaced by the remote one (EVF-04).
                    if (keys is None or key in keys) and key not in results:
                        results[key] = remote
                if definitions is not None and scope and not answer.errors_while_computing:
                    flags, answered = definitions.flags, answer.flags
                    self._remember_missing(k for k in scope if k not in flags and k not in answered)
        return did, results

    def _remember_missing(self, keys: Iterable[str]) -> None:
        """Negative knowledge (EVF-06): keys absent from the definitions and from a
        complete ``/flags`` answer. Forgotten at the next successful refresh."""
        for key in keys:
            if len(self._known_missing) < _KNOWN_MISSING_MAX:
                self._known_missing.add(key)

    def snapshot(
        self, did: str | None, results: dict[str, FlagResult], groups: Mapping[str, Any] | None
    ) -> FlagEvaluations:
        groups_ = dict(groups or {})

        def expose(key: str, result: FlagResult | None) -> None:
            if did is not None:
                error = None if result else "flag_missing"
                self.expose(did, key, result, groups_, error, snapshot=True)

        return FlagEvaluations(did, results, expose)

    # ---------------------------------------------------------------- exposure

    def expose(
        self,
        did: str,
        key: str,
        result: FlagResult | None,
        groups: Mapping[str, Any],
        error: str | None,
        *,
        snapshot: bool = False,
        answered: Answered = None,
    ) -> None:
        """Send ``$feature_flag_called`` for this read, once per (distinct id, flag,
        value, groups); ``error`` is its ``$feature_flag_error`` (e.g. ``flag_missing``).
        As posthog 7.91.1 does, a local value's reason (``Evaluated locally``) is sent
        for a ``FlagEvaluations`` snapshot's read, not for a single-flag read."""
        value: FlagValue | None = None if result is None else result.get_value()
        normalized = tuple(sorted((str(k), str(v)) for k, v in groups.items())) if groups else ()
        seen_key = (key, value, normalized)
        known = self._seen.get(did)
        if known is not None and seen_key in known:
            return  # the common case, decided without the lock (reads are atomic)
        with self._seen_lock:
            seen = self._seen.get(did)
            if seen is None:
                while len(self._seen) >= _TRACKER_MAX_IDS:
                    self._seen.popitem(last=False)  # oldest id first, never a full wipe
                seen = self._seen[did] = set()
            else:
                self._seen.move_to_end(did)
            if seen_key in seen:
                return
            if len(seen) >= _SEEN_PER_ID_MAX:
                seen.clear()  # an exposure may be sent again: never lost, never unbounded
            seen.add(seen_key)
        properties: dict[str, Any] = {
            "$feature_flag": key,
            "$feature_flag_response": value,
            f"$feature/{key}": value,
            "locally_evaluated": bool(result and result.locally_evaluated),
        }
        if result is not None:
            for name, item in (
                ("$feature_flag_payload", result.payload),
                ("$feature_flag_id", result.id),
                ("$feature_flag_version", result.version),
                ("$feature_flag_reason", _exposed_reason(result, snapshot)),
                ("$feature_flag_request_id", result.request_id),
            ):
                if item is not None:
                    properties[name] = item
            if result.evaluated_at and not result.locally_evaluated:
                properties["$feature_flag_evaluated_at"] = result.evaluated_at
        elif answered is not None:  # a flag the answer lacked: what posthog sends too
            request_id, evaluated_at = answered
            if request_id:
                properties["$feature_flag_request_id"] = request_id
            if evaluated_at:
                properties["$feature_flag_evaluated_at"] = evaluated_at
        if error:
            properties["$feature_flag_error"] = error
        has_experiment = None if result is None else result.has_experiment
        if has_experiment is not None:
            properties["$feature_flag_has_experiment"] = has_experiment
        message = Capture("$feature_flag_called", did, properties, groups=groups or None)
        if has_experiment is False and result is not None and result.minimal_exposure:
            self._emit(message, MINIMAL_EVENT_PROPERTIES)
        else:
            self._emit(message, None)

    # ---------------------------------------------------------------- overrides
    # (``FlagOverrides``: scoped to the identity context when inside one)

    def set_person_overrides(self, properties: object) -> None:
        self.overrides.set_person(properties)

    def set_group_overrides(self, properties: object, group_type_properties: object = None) -> None:
        self.overrides.set_groups(properties, group_type_properties)

    def reset_person_overrides(self) -> None:
        self.overrides.reset_person()

    def reset_group_overrides(self, group_type: object = None) -> None:
        self.overrides.reset_groups(group_type)

    def context_overrides(
        self,
    ) -> tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]] | None:
        """See ``FlagOverrides.for_another_thread``."""
        return self.overrides.for_another_thread()


def _unforeseen(definitions: Definitions, flag: CompiledFlag, value: Any) -> FlagResult:
    """The result of a value the compiler did not prepare (a malformed variant key)."""
    return build_local_result(flag, value, definitions.minimal_flag_called_events)


def _exposed_reason(result: FlagResult, snapshot: bool) -> str | None:
    """The ``$feature_flag_reason`` of an exposure: the server's description, or for a
    local value only when read from a snapshot (posthog's single reads send none)."""
    return result.reason if snapshot or not result.locally_evaluated else None


def _context_device_id() -> str | None:
    """The identity context's device id (``context(device_id=...)``), if any."""
    ctx = _current.get()
    return None if ctx is None else ctx.device_id
