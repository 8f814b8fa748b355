"""Local flag evaluation over compiled definitions, in the server's order.

``Definitions.compile(payload)`` turns a ``/flags/definitions`` response into compiled
flags once; ``Definitions.evaluate(key, ...)`` then decides a flag for one person (or
group) or raises ``Unresolved`` when only the server can: experience continuity, a
static cohort, an unknown group type, a property that was not passed, an unsupported
filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._log import logger
from ._compiled import (
    CompiledCondition,
    CompiledFlag,
    Filter,
    Properties,
    local_results,
    match_kinds,
    same_for_everyone,
)
from ._errors import (
    EXPERIENCE_CONTINUITY,
    MISSING_CONTEXT,
    UNDECIDED,
    UNRESOLVED_DEPENDENCY,
    UNSUPPORTED_DEFINITION,
    Inconclusive,
    NeedsServer,
    pick,
)
from ._fastpath import person_evaluator
from ._hashing import bucket_with_prefix, holdout_bucket
from ._operators import compile_property
from ._results import FlagValue

_NOT_CACHED = object()


class _State:
    """One evaluation: its inputs and the values of the flags it depended on."""

    __slots__ = ("cache", "definitions", "device_id", "distinct_id")

    def __init__(self, definitions: Definitions, distinct_id: Any, device_id: Any) -> None:
        self.definitions = definitions
        self.distinct_id = distinct_id
        self.device_id = device_id
        self.cache: dict[str, FlagValue | None] = {}


class Definitions:
    """Compiled flags, cohorts and group types from one definitions payload."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        version = payload.get("property_matching_version", 1)
        self.matching_version = version
        self.minimal_flag_called_events = payload.get("minimal_flag_called_events") is True
        self.group_type_mapping: Mapping[str, str] = payload.get("group_type_mapping") or {}
        self.cohorts: Mapping[str, Any] = payload.get("cohorts") or {}
        self._cohort_matchers: dict[str, Filter] = {}
        self._no_state = _State(self, None, None)
        # The shortcut's state (no device id: the general evaluator has it when needed).
        self._new_state = lambda distinct_id: _State(self, distinct_id, None)
        self.raw_flags: list[Mapping[str, Any]] = [
            raw for raw in payload.get("flags") or [] if isinstance(raw, Mapping)
        ]
        self.flags: dict[str, CompiledFlag] = {}
        for raw in self.raw_flags:
            key = raw.get("key")
            if not isinstance(key, str):
                continue
            try:
                self.flags[key] = self._finish(self._compile_flag(raw))
            except Exception as exc:
                # One unreadable flag must not take local evaluation away from the others.
                logger.warning(
                    "flag %r has a definition this SDK cannot read (%s); it is evaluated remotely",
                    key,
                    exc,
                )
                self.flags[key] = self._finish(_unreadable(key, raw))

    # ------------------------------------------------------------ compiling

    def _finish(self, flag: CompiledFlag) -> CompiledFlag:
        """What every read would otherwise work out again: worked out once, here."""
        flag.match_kinds = match_kinds(flag)
        flag.same_for_everyone = same_for_everyone(flag)
        flag.uses_groups = flag.aggregation is not None or any(
            c.aggregation is not None for c in flag.conditions
        )
        flag.results = local_results(flag, self.minimal_flag_called_events)
        flag.fast = person_evaluator(flag, self._new_state)
        return flag

    def _compile_flag(self, raw: Mapping[str, Any]) -> CompiledFlag:
        filters = raw.get("filters") or {}
        holdout = filters.get("holdout")
        holdout_spec = None
        if (
            holdout
            and holdout.get("exclusion_percentage") is not None
            and holdout.get("id") is not None
        ):
            holdout_spec = (
                min(max(float(holdout["exclusion_percentage"]), 0.0), 100.0),
                holdout["id"],
            )
        variants = []
        low = 0.0
        for variant in (filters.get("multivariate") or {}).get("variants") or []:
            high = low + variant["rollout_percentage"] / 100
            variants.append((variant["key"], low, high))
            low = high
        aggregation = filters.get("aggregation_group_type_index")
        identifier = raw.get("bucketing_identifier") or filters.get("bucketing_identifier")
        return CompiledFlag(
            key=raw["key"],
            definition=raw,
            active=bool(raw.get("active")),
            continuity=bool(raw.get("ensure_experience_continuity", False)),
            aggregation=aggregation,
            device_bucketing=identifier == "device_id",
            enrollment=filters.get("feature_enrollment") is True,
            super_conditions=bool(filters.get("super_groups")),
            holdout=holdout_spec,
            early_exit=bool(filters.get("early_exit")),
            conditions=[
                CompiledCondition(
                    filters=[self._compile_filter(p) for p in condition.get("properties") or []],
                    rollout=condition.get("rollout_percentage"),
                    variant=condition.get("variant"),
                    has_own_aggregation="aggregation_group_type_index" in condition,
                    aggregation=condition.get("aggregation_group_type_index", aggregation),
                )
                for condition in filters.get("groups") or []
            ],
            variants=variants,
            payloads=filters.get("payloads") or {},
            needs_state=any(
                isinstance(p, Mapping) and p.get("type") in ("cohort", "flag")
                for condition in filters.get("groups") or []
                for p in condition.get("properties") or []
            ),
        )

    def _compile_filter(self, prop: Mapping[str, Any]) -> Filter:
        kind = prop.get("type")
        if kind == "cohort":
            return self._compile_cohort_filter(prop)
        if kind == "flag":
            return _compile_dependency(prop)
        return compile_property(prop, self.matching_version)

    def _compile_cohort_filter(self, prop: Mapping[str, Any]) -> Filter:
        cohort_id = str(prop.get("value"))
        operator = prop.get("operator") or "exact"

        def cohort(properties: Properties, state: _State) -> bool:
            if cohort_id not in self.cohorts:
                raise NeedsServer(UNSUPPORTED_DEFINITION, f"cohort {cohort_id} is not local")
            if operator not in ("exact", "in", "not_in"):
                raise Inconclusive(UNSUPPORTED_DEFINITION, f"cohort operator {operator!r}")
            matched = self._cohort(cohort_id)(properties, state)
            if matched is UNDECIDED:
                return matched
            return not matched if operator == "not_in" else matched

        return cohort

    def _cohort(self, cohort_id: str) -> Filter:
        matcher = self._cohort_matchers.get(cohort_id)
        if matcher is None:
            # Compiled on first use: cohorts may refer to each other (even in cycles).
            self._cohort_matchers[cohort_id] = lambda p, s: self._cohort_matchers[cohort_id](p, s)
            matcher = self._compile_group(self.cohorts[cohort_id])
            self._cohort_matchers[cohort_id] = matcher
        return matcher

    def _compile_group(self, group: Any) -> Filter:
        """An AND/OR property group: every entry is evaluated (a static cohort anywhere
        still needs the server); a decisive entry wins over inconclusive ones."""
        if group == {}:
            return lambda properties, state: True
        if (
            not isinstance(group, dict)
            or group.get("type") not in ("AND", "OR")
            or not isinstance(group.get("values"), list)
        ):
            return _needs_server("malformed cohort property group")
        is_and: bool = group["type"] == "AND"
        entries: list[tuple[Filter, bool]] = []
        for entry in group["values"]:
            if not isinstance(entry, dict):
                return _needs_server("malformed cohort entry")
            if entry == {} or "values" in entry or entry.get("type") in ("AND", "OR"):
                entries.append((self._compile_group(entry), False))
            else:
                entries.append((self._compile_filter(entry), bool(entry.get("negation", False))))
        if not entries:
            return lambda properties, state: True

        def evaluate(properties: Properties, state: _State) -> bool:
            decisive: bool | None = None
            reason: str | None = None
            for matcher, negated in entries:
                try:
                    outcome = matcher(properties, state)
                except Inconclusive as error:
                    reason = pick(reason, error.reason)
                    continue
                if outcome is UNDECIDED:
                    reason = pick(reason, MISSING_CONTEXT)
                    continue
                matched = outcome != negated
                if matched != is_and:
                    decisive = matched
            if decisive is not None:
                return decisive
            if reason is not None:
                return _undecided(reason, "cohort cannot be decided")
            return is_and

        return evaluate

    # ------------------------------------------------------------ evaluating

    def evaluate(
        self,
        key: str,
        distinct_id: Any,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Properties | None = None,
        group_properties: Mapping[str, Properties] | None = None,
        device_id: Any = None,
    ) -> FlagValue:
        """The flag's value for this person (or group); raises ``KeyError`` for an
        unknown flag and ``Unresolved`` when only the server can decide."""
        flag = self.flags[key]
        return self.evaluate_flag(
            flag,
            distinct_id,
            groups or {},
            person_properties or {},
            group_properties or {},
            device_id,
        )

    def evaluate_flag(
        self,
        flag: CompiledFlag,
        distinct_id: Any,
        groups: Mapping[str, Any],
        person_properties: Properties,
        group_properties: Mapping[str, Properties],
        device_id: Any = None,
        trace: list[Any] | None = None,
    ) -> FlagValue:
        """As ``evaluate``; ``trace``, when given, receives how the value was decided:
        ``"inactive"``, ``"enrollment"``, ``"holdout"``, ``("condition", index)`` or
        ``"no_match"`` (see ``decision``).

        The one place that chooses between the shortcut of a plain person flag
        (``flag.fast``, see ``_fastpath``) and the general evaluator: every local read
        comes through here."""
        value = self.decide(
            flag, distinct_id, groups, person_properties, group_properties, device_id, trace
        )
        if value is None:
            raise Inconclusive(MISSING_CONTEXT, "a property needed was not passed")
        return value

    def decide(
        self,
        flag: CompiledFlag,
        distinct_id: Any,
        groups: Mapping[str, Any],
        person_properties: Properties,
        group_properties: Mapping[str, Properties],
        device_id: Any = None,
        trace: list[Any] | None = None,
    ) -> FlagValue | None:
        """As ``evaluate_flag``, but a flag left undecided by a missing property is
        ``None`` instead of an exception: the read path's way (an inconclusive read
        costs no exception). Other reasons still raise ``Unresolved``."""
        fast = flag.fast
        if fast is not None and type(distinct_id) is str:
            if trace is None:  # the common case, kept short: every local read is here
                try:
                    return fast(distinct_id, person_properties)
                except Exception:
                    pass  # it could not decide: the general evaluator will
            else:
                mark = len(trace)
                try:
                    return fast(distinct_id, person_properties, trace)
                except Exception:
                    del trace[mark:]  # what the shortcut noted before giving up
        return self._evaluate_general(
            flag, distinct_id, groups, person_properties, group_properties, device_id, trace
        )

    def _evaluate_general(
        self,
        flag: CompiledFlag,
        distinct_id: Any,
        groups: Mapping[str, Any],
        person_properties: Properties,
        group_properties: Mapping[str, Properties],
        device_id: Any = None,
        trace: list[Any] | None = None,
    ) -> FlagValue | None:
        """The general evaluator: every kind of definition, in the server's order;
        ``None`` when a missing property leaves the flag undecided."""
        if not flag.active:
            if trace is not None:
                trace.append("inactive")
            return False
        if flag.continuity:
            raise Inconclusive(EXPERIENCE_CONTINUITY, "experience continuity")
        if flag.super_conditions:
            # Early-access super conditions: posthog 7.91.1 ignores them; the server does not.
            raise Inconclusive(UNSUPPORTED_DEFINITION, "super conditions")
        # Only cohort and dependency filters use the state; most flags share a dummy one.
        state = _State(self, distinct_id, device_id) if flag.needs_state else self._no_state
        if flag.aggregation is not None:
            group_name = self.group_type_mapping.get(str(flag.aggregation))
            if not group_name:
                raise Inconclusive(UNSUPPORTED_DEFINITION, "unknown group type index")
            if group_name not in groups:
                # posthog 7.91.1 answers False here; it cannot know, so we ask the server.
                raise Inconclusive(MISSING_CONTEXT, f"group {group_name!r} not passed")
            if group_name not in group_properties:
                raise Inconclusive(MISSING_CONTEXT, "group properties not passed")
            group_key = groups[group_name]
            if flag.needs_state:
                state.distinct_id = group_key
            return self._match(
                flag,
                group_properties[group_name],
                state,
                group_key,
                groups,
                group_properties,
                trace,
            )
        if flag.device_bucketing:
            if not device_id:
                raise Inconclusive(MISSING_CONTEXT, "device_id needed for bucketing")
            bucketing: Any = device_id
        else:
            bucketing = distinct_id
        return self._match(
            flag, person_properties, state, bucketing, groups, group_properties, trace
        )

    def _match(
        self,
        flag: CompiledFlag,
        properties: Properties,
        state: _State,
        bucketing: Any,
        groups: Mapping[str, Any],
        group_properties: Mapping[str, Properties],
        trace: list[Any] | None = None,
    ) -> FlagValue | None:
        """The value of ``flag`` for ``properties``, or ``None`` when a missing property
        leaves it undecided (raises ``Unresolved`` for the other reasons)."""
        if flag.enrollment:
            if trace is not None:
                trace.append("enrollment")
            return _enrollment(flag, properties)
        if flag.holdout is not None:
            percentage, holdout_id = flag.holdout
            if percentage == 100.0 or holdout_bucket(bucketing) <= percentage / 100:
                if trace is not None:
                    trace.append("holdout")
                return f"holdout-{holdout_id}"
        reason: str | None = None
        aggregation = flag.aggregation
        for index, condition in enumerate(flag.conditions):
            subject, key = properties, bucketing
            if condition.aggregation != aggregation and condition.aggregation is not None:
                # Mixed targeting: this condition is about a group, not the flag's subject.
                group_name = self.group_type_mapping.get(str(condition.aggregation))
                if not group_name or group_name not in groups:
                    continue
                if group_name not in group_properties:
                    reason = pick(reason, MISSING_CONTEXT)
                    continue
                subject, key = group_properties[group_name], groups[group_name]
            if condition.filters:
                try:
                    matched = _all_match(condition.filters, subject, state)
                except Inconclusive as error:
                    reason = pick(reason, error.reason)
                    continue
                if matched is UNDECIDED:
                    reason = pick(reason, MISSING_CONTEXT)
                    continue
                if not matched:
                    continue
            rollout = condition.rollout
            # A bucket is at most 1.0, so a rollout of 100 % or more needs no hash.
            if (
                rollout is not None
                and rollout < 100
                and bucket_with_prefix(flag.hash_prefix, key) > rollout / 100
            ):
                if flag.early_exit:
                    break
                continue
            if trace is not None:
                trace.append(("condition", index))
            return self._value(flag, condition, key) if flag.variants else True
        if reason is not None:
            return None  # no condition could be decided: only the server can answer
        if trace is not None:
            trace.append("no_match")
        return False

    @staticmethod
    def _value(flag: CompiledFlag, condition: CompiledCondition, bucketing: Any) -> FlagValue:
        if not flag.variants:
            return True
        override = condition.variant
        if override and any(key == override for key, _, _ in flag.variants):
            return override
        if flag.variants:
            point = bucket_with_prefix(flag.hash_prefix, bucketing, b"variant")
            for key, low, high in flag.variants:
                if low <= point < high:
                    return key
        return True


def _all_match(filters: list[Filter], properties: Properties, state: _State) -> bool:
    """AND of a condition's filters, in the server's way: a definite non-match wins;
    a "needs server" from the first undecidable filter aborts the flag."""
    reason: str | None = None
    server: NeedsServer | None = None
    for matcher in filters:
        try:
            matched = matcher(properties, state)
            if matched is UNDECIDED:
                reason = pick(reason, MISSING_CONTEXT)
                continue
        except NeedsServer as error:
            if reason is None:
                server = error
            reason = pick(reason, error.reason)
            continue
        except Inconclusive as error:
            reason = pick(reason, error.reason)
            continue
        except Exception:
            if reason is None:
                raise
            break
        if not matched:
            return False
    if server is not None:
        raise server
    if reason is not None:
        return _undecided(reason, "a filter could not be decided")
    return True


def _undecided(reason: str, message: str) -> bool:
    """``UNDECIDED`` for a missing property (no exception on that common path), else
    ``Inconclusive`` raised with the reason."""
    if reason == MISSING_CONTEXT:
        return UNDECIDED
    raise Inconclusive(reason, message)


def _enrollment(flag: CompiledFlag, properties: Properties) -> bool:
    key = f"$feature_enrollment/{flag.key}"
    if flag.aggregation is not None:
        raise Inconclusive(UNSUPPORTED_DEFINITION, "group flag with feature enrollment")
    if key not in properties:
        raise Inconclusive(MISSING_CONTEXT, f"{key} not passed")
    value = properties[key]
    return value is True or value == "true"


def _unreadable(key: str, raw: Mapping[str, Any]) -> CompiledFlag:
    """A flag whose definition could not be compiled: only the server can decide it
    (and a flag that depends on it)."""
    return CompiledFlag(
        key=key,
        definition=raw,
        active=True,
        continuity=False,
        aggregation=None,
        device_bucketing=False,
        enrollment=False,
        super_conditions=False,
        holdout=None,
        early_exit=False,
        conditions=[
            CompiledCondition(
                filters=[_needs_server("unreadable flag definition")],
                rollout=None,
                variant=None,
                has_own_aggregation=False,
                aggregation=None,
            )
        ],
        variants=[],
        payloads={},
    )


def _needs_server(message: str) -> Filter:
    def matcher(properties: Properties, state: _State) -> bool:
        raise NeedsServer(UNSUPPORTED_DEFINITION, message)

    return matcher


def _compile_dependency(prop: Mapping[str, Any]) -> Filter:
    """A ``flag_evaluates_to`` filter: the parent flag's value against the expected one."""
    parent = prop.get("key")
    expected = prop.get("value")
    if (prop.get("operator") or "exact") != "flag_evaluates_to" or not parent or expected is None:
        return lambda properties, state: False  # malformed: a definite no-match, as on the server
    chain = prop.get("dependency_chain", _NOT_CACHED)

    def dependency(properties: Properties, state: _State) -> bool:
        if chain is _NOT_CACHED or not isinstance(chain, list) or not chain:
            raise Inconclusive(UNSUPPORTED_DEFINITION, "bad dependency chain")
        flags, cache = state.definitions.flags, state.cache
        for key in chain:
            if key not in cache and not state.definitions.flags.get(key):
                cache[key] = None
                raise Inconclusive(UNSUPPORTED_DEFINITION, f"dependency {key!r} not loaded")
        for key in chain:
            if key not in cache and _evaluate_dependency(flags[key], properties, state) is None:
                return UNDECIDED  # a flag of the chain is undecided: so is this one
        actual = cache.get(parent)
        if actual is None:
            if parent in flags and parent in cache:
                return UNDECIDED  # undecided earlier in this evaluation
            raise Inconclusive(UNSUPPORTED_DEFINITION, f"dependency {parent!r} unresolved")
        return _dependency_matches(expected, actual)

    return dependency


def _evaluate_dependency(
    flag: CompiledFlag, properties: Properties, state: _State
) -> FlagValue | None:
    """Evaluate a flag of a dependency chain into the state's cache: its value, or
    ``None`` when it cannot be decided for a missing property (other reasons raise)."""
    cache = state.cache
    if not flag.active:
        cache[flag.key] = False
        return False
    if flag.continuity:
        cache[flag.key] = None
        raise Inconclusive(UNRESOLVED_DEPENDENCY, "dependency with experience continuity")
    if flag.aggregation is not None or not flag.device_bucketing:
        bucketing = state.distinct_id
    elif state.device_id:
        bucketing = state.device_id
    else:
        cache[flag.key] = None
        raise Inconclusive(UNRESOLVED_DEPENDENCY, "dependency needs device_id")
    if flag.fast is not None and type(bucketing) is str:
        try:  # the shortcut when it can handle it, else the general evaluator below
            value = cache[flag.key] = flag.fast(bucketing, properties)
            return value
        except Exception:
            pass
    try:
        value = cache[flag.key] = state.definitions._match(
            flag, properties, state, bucketing, {}, {}
        )
    except NeedsServer as error:
        raise NeedsServer(UNRESOLVED_DEPENDENCY, str(error)) from error
    except Inconclusive as error:
        cache[flag.key] = None
        raise Inconclusive(UNRESOLVED_DEPENDENCY, str(error)) from error
    return value


def _dependency_matches(expected: Any, actual: FlagValue) -> bool:
    if isinstance(actual, str) and actual:
        if isinstance(expected, bool):
            return expected
        return isinstance(expected, str) and actual == expected
    if isinstance(actual, bool) and isinstance(expected, bool):
        return actual == expected
    return False
