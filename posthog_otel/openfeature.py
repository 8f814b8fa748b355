"""``PostHogProvider``: PostHog feature flags through OpenFeature.

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from posthog_otel.openfeature import PostHogProvider

    api.set_provider_and_wait(PostHogProvider(client))
    context = EvaluationContext("u1", {"plan": "pro"})
    api.get_client().get_boolean_value("new-checkout", False, context)

Context mapping (as the official ``openfeature-provider-posthog``): the targeting key is
the distinct id (else the identity context, else ``default_distinct_id``); attributes
``groups`` and ``group_properties`` keep their PostHog meaning; every other attribute is
a person property.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import (
    ErrorCode,
    FlagNotFoundError,
    GeneralError,
    OpenFeatureError,
    TargetingKeyMissingError,
    TypeMismatchError,
)
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from ._context import get_distinct_id
from ._fork import fork_safe_lock
from ._log import logger

if TYPE_CHECKING:
    from openfeature.flag_evaluation import FlagValueType

    from .client import Client
    from .flags import FlagResult

__all__ = ["PostHogProvider"]

T = TypeVar("T")

# PostHog's remote reason codes, as OpenFeature reasons.
_REMOTE_REASONS = {
    "condition_match": Reason.TARGETING_MATCH,
    "no_condition_match": Reason.DEFAULT,
    "out_of_rollout_bound": Reason.DEFAULT,
    "flag_disabled": Reason.DISABLED,
}
# How the flag service says a local value was decided (``FlagsService.explain``), as
# OpenFeature reasons.
_LOCAL_REASONS = {
    "inactive": Reason.DISABLED,
    "holdout": Reason.SPLIT,
    "enrollment": Reason.TARGETING_MATCH,
    "no_match": Reason.DEFAULT,
    "targeted": Reason.TARGETING_MATCH,
    "split": Reason.SPLIT,
    "default": Reason.DEFAULT,
    "static": Reason.STATIC,
}
# Local results are shared objects (one per flag and value): their metadata is kept,
# by result, up to this many (then forgotten at once: a new definitions load replaces
# every result anyway).
_METADATA_MAX = 4096


class PostHogProvider(AbstractProvider):
    """An OpenFeature provider backed by a ``posthog_otel.Client``'s flags.

    Local evaluation when definitions are loaded (with reasons derived from the matched
    condition), one ``/flags`` request otherwise. Exposure (``$feature_flag_called``) is
    sent for every typed resolution, deduplicated, unless ``send_feature_flag_events``
    is off. Events: READY after ``initialize``; CONFIGURATION_CHANGED with the changed
    keys when polled definitions change; STALE when a refresh fails, ERROR once failures
    outlast ``stale_grace_period``; READY again on recovery.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        default_distinct_id: str | None = None,
        init_timeout: float | None = None,
        stale_grace_period: float = 60.0,
        send_feature_flag_events: bool = True,
    ) -> None:
        if client is None:
            from .client import default_client

            client = default_client()
        self.client = client
        self.default_distinct_id = default_distinct_id
        self.init_timeout = (
            client.config.flags.initial_load_timeout if init_timeout is None else init_timeout
        )
        self.stale_grace_period = stale_grace_period
        self.send_feature_flag_events = send_feature_flag_events
        self._lock = fork_safe_lock()
        self._failing_since: float | None = None
        self._state = "ready"  # ready | stale | error
        # Changes are told from the end of ``initialize``: the first load is READY, not a
        # CONFIGURATION_CHANGED listing every flag before it.
        self._initialized = False
        # id(result) -> (result, its metadata); the result is held, so its id stays its own.
        self._metadata_cache: dict[int, tuple[FlagResult, Mapping[str, Any]]] = {}

    # ---------------------------------------------------------------- lifecycle

    def get_metadata(self) -> Metadata:
        return Metadata(name="PostHogProvider")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Wait (bounded) for the first definitions; ready either way (remote works)."""
        flags = self.client.flags
        self._initialized = False
        flags.add_listener(self)
        if not flags.wait_loaded(self.init_timeout):
            logger.warning(
                "PostHogProvider: flag definitions not loaded within %.1fs; evaluating "
                "remotely until they are",
                self.init_timeout,
            )
        self._initialized = True

    def shutdown(self) -> None:
        """Stop listening; the client is left open (you own it)."""
        self.client.flags.remove_listener(self)

    def definitions_changed(self, keys: list[str]) -> None:
        if keys and self._initialized:
            self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=keys))

    def definitions_refreshed(self, ok: bool) -> None:
        with self._lock:
            previous = self._state
            if ok:
                self._failing_since, self._state = None, "ready"
            else:
                now = self.client.flags.clock.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                failing_for = now - self._failing_since
                self._state = "error" if failing_for >= self.stale_grace_period else "stale"
            state = self._state
        if state == previous:
            return
        if state == "ready":
            self.emit_provider_ready(ProviderEventDetails(message="flag definitions refreshed"))
        elif state == "stale":
            self.emit_provider_stale(
                ProviderEventDetails(message="flag definitions could not be refreshed")
            )
        else:
            self.emit_provider_error(
                ProviderEventDetails(
                    message="flag definitions could not be refreshed for "
                    f"{self.stale_grace_period:.0f}s",
                    error_code=ErrorCode.GENERAL,
                )
            )

    # ---------------------------------------------------------------- tracking

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: Any = None,
    ) -> None:
        """A PostHog capture for the resolved distinct id (value and attributes as
        properties)."""
        try:
            distinct_id, _, _, _ = self._context(evaluation_context)
        except OpenFeatureError:
            logger.warning(
                "PostHogProvider.track: no distinct id; %r not sent", tracking_event_name
            )
            return
        properties: dict[str, Any] = {}
        if tracking_event_details is not None:
            value = getattr(tracking_event_details, "value", None)
            attributes = getattr(tracking_event_details, "attributes", None) or {}
            properties.update(attributes)
            if value is not None:
                properties["value"] = value
        self.client.capture(tracking_event_name, distinct_id, properties)

    # ---------------------------------------------------------------- resolvers

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_boolean)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_string)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_integer)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_object)

    # The async resolvers run the evaluation on a worker thread: a remote call must not
    # block the event loop.

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return await asyncio.to_thread(
            self.resolve_boolean_details, flag_key, default_value, evaluation_context
        )

    async def resolve_string_details_async(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return await asyncio.to_thread(
            self.resolve_string_details, flag_key, default_value, evaluation_context
        )

    async def resolve_integer_details_async(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return await asyncio.to_thread(
            self.resolve_integer_details, flag_key, default_value, evaluation_context
        )

    async def resolve_float_details_async(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return await asyncio.to_thread(
            self.resolve_float_details, flag_key, default_value, evaluation_context
        )

    async def resolve_object_details_async(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return await asyncio.to_thread(
            self.resolve_object_details, flag_key, default_value, evaluation_context
        )

    # ---------------------------------------------------------------- internals

    def _context(
        self, evaluation_context: EvaluationContext | None
    ) -> tuple[str, Mapping[str, Any], Mapping[str, Any], Mapping[str, Mapping[str, Any]]]:
        context = evaluation_context or EvaluationContext()
        distinct_id = context.targeting_key or get_distinct_id() or self.default_distinct_id
        if not distinct_id:
            raise TargetingKeyMissingError("no targeting key, identity context or default")
        attributes: dict[str, Any] = dict(context.attributes or {})
        groups: Any = attributes.pop("groups", None) or {}
        group_properties: Any = attributes.pop("group_properties", None) or {}
        if not isinstance(groups, Mapping) or not isinstance(group_properties, Mapping):
            raise TypeMismatchError("groups and group_properties must be mappings")
        return str(distinct_id), groups, attributes, group_properties

    def _resolve(
        self,
        flag_key: str,
        default_value: T,
        evaluation_context: EvaluationContext | None,
        convert: Callable[[FlagResult, T], T],
    ) -> FlagResolutionDetails[T]:
        distinct_id, groups, person, group_properties = self._context(evaluation_context)
        try:
            return self._evaluate(
                flag_key, default_value, distinct_id, groups, person, group_properties, convert
            )
        except OpenFeatureError:
            raise
        except Exception as exc:  # never a traceback per evaluation in the app's logs
            raise GeneralError(f"evaluation of {flag_key!r} failed: {exc}") from None

    def _evaluate(
        self,
        flag_key: str,
        default_value: T,
        distinct_id: str,
        groups: Mapping[str, Any],
        person: Mapping[str, Any],
        group_properties: Mapping[str, Mapping[str, Any]],
        convert: Callable[[FlagResult, T], T],
    ) -> FlagResolutionDetails[T]:
        service = self.client.flags
        did, groups_, person_, group_props = service.inputs(
            distinct_id, groups, person, group_properties
        )
        assert did is not None
        local = service.explain(flag_key, did, groups_, person_, group_props)
        error: str | None = None  # the exposure's $feature_flag_error
        if local is not None:
            result, decided = local
            reason = _LOCAL_REASONS.get(decided, Reason.UNKNOWN)
        else:
            # Exposure below: the event reports what the caller receives.
            remote, error, _, answered = service.ask(flag_key, did, groups_, person_, group_props)
            if remote is None:
                if self.send_feature_flag_events:
                    service.expose(did, flag_key, None, groups_, error, answered=answered)
                raise FlagNotFoundError(f"flag {flag_key!r} not found")
            result = remote
            reason = _REMOTE_REASONS.get(result.reason_code or "", Reason.UNKNOWN)
        metadata = self._metadata_of(result)
        if reason == Reason.DISABLED:
            # The caller's default: the exposure says so (none for a default that is
            # not a flag value, a number or an object).
            received = _as_received(result, default_value)
            if self.send_feature_flag_events and received is not None:
                service.expose(did, flag_key, received, groups_, error)
            return FlagResolutionDetails(default_value, reason=reason, flag_metadata=metadata)
        if self.send_feature_flag_events:
            service.expose(did, flag_key, result, groups_, error)
        if not result.enabled and not isinstance(default_value, bool):
            # Nothing matched: a typed value other than a boolean has nothing to give.
            return FlagResolutionDetails(default_value, reason=reason, flag_metadata=metadata)
        value = convert(result, default_value)
        return FlagResolutionDetails(
            value, reason=reason, variant=result.variant, flag_metadata=metadata
        )

    def _metadata_of(self, result: FlagResult) -> Mapping[str, Any]:
        """``_metadata(result)``, built once per local result (a lookup after that)."""
        cache = self._metadata_cache
        entry = cache.get(id(result))
        if entry is not None and entry[0] is result:
            return entry[1]
        metadata = _metadata(result)
        if result.locally_evaluated:  # a remote result is new at every read: not kept
            if len(cache) >= _METADATA_MAX:
                cache.clear()
            cache[id(result)] = (result, metadata)
        return metadata


def _metadata(result: FlagResult) -> Mapping[str, Any]:
    """Immutable flag metadata without ``None`` values."""
    items = {
        "flag_id": result.id,
        "version": result.version,
        "posthog_reason": result.reason_code or result.reason,
        "locally_evaluated": result.locally_evaluated,
        "request_id": result.request_id,
    }
    return MappingProxyType({k: v for k, v in items.items() if v is not None})


# ---------------------------------------------------------------- typed values


def _as_received(result: FlagResult, default: Any) -> FlagResult | None:
    """``result`` carrying the caller's ``default`` as its value (a disabled flag's
    exposure), or ``None`` when the default is not a flag value."""
    if isinstance(default, bool):
        return replace(result, enabled=default, variant=None)
    if isinstance(default, str):
        return replace(result, enabled=True, variant=default)
    return None


def _as_boolean(result: FlagResult, default: bool) -> bool:
    if result.variant is not None:
        raise TypeMismatchError(
            "a multivariate flag read as a boolean (use is_feature_enabled for 'any variant')"
        )
    return result.enabled


def _variant(result: FlagResult) -> str:
    if result.variant is None:
        raise TypeMismatchError("a boolean flag has no variant to read as a string or number")
    return result.variant


def _as_string(result: FlagResult, default: str) -> str:
    return _variant(result)


def _as_integer(result: FlagResult, default: int) -> int:
    try:
        return int(_variant(result), 0)
    except ValueError:
        raise TypeMismatchError("the variant key is not an integer") from None


def _as_float(result: FlagResult, default: float) -> float:
    try:
        return float(_variant(result))
    except ValueError:
        raise TypeMismatchError("the variant key is not a number") from None


def _as_object(result: FlagResult, default: Any) -> Any:
    if isinstance(result.payload, Mapping | list):
        return result.payload
    raise TypeMismatchError("the flag's payload is not a JSON object or array")
