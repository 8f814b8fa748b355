"""A compiled flag: what the compiler (``_evaluator.Definitions``) makes of one flag
definition, as plain data that the evaluators and the service read and never write.

Everything a read needs that depends only on the definition is worked out here, once
per definitions load: the hash prefix, how a match on each condition is decided (for
the "why" of a value, e.g. OpenFeature reasons) and the result of every value the flag
can take. The general evaluator (``_evaluator``) and the shortcut for plain person
flags (``_fastpath``) both import this module and nothing of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._results import FlagResult, FlagValue, decode_payload, experiment_flag

Properties = Mapping[str, Any]
# (properties, the evaluation's state) -> matched; raises ``Unresolved`` when it cannot
# decide. The state is the general evaluator's own (``_evaluator._State``).
Filter = Callable[[Properties, Any], bool]
# (distinct id, person properties[, trace]) -> value; see ``_fastpath``.
PersonEvaluator = Callable[..., "FlagValue | None"]

LOCAL_REASON = "Evaluated locally"

# How a match on a condition is decided (``CompiledFlag.match_kinds``):
TARGETED = "targeted"  # by the person's (or group's) properties
SPLIT = "split"  # by a percentage: a rollout, a variant split or a holdout
DEFAULT = "default"  # the catch-all condition of a flag that targets elsewhere
STATIC = "static"  # the same for everyone: no targeting, no percentage


@dataclass
class CompiledCondition:
    filters: list[Filter]
    rollout: float | None
    variant: str | None
    has_own_aggregation: bool
    aggregation: int | None


@dataclass
class CompiledFlag:
    """A flag definition, prepared for evaluation (built by the compiler only)."""

    key: str
    definition: Mapping[str, Any]
    active: bool
    continuity: bool
    aggregation: int | None
    device_bucketing: bool
    enrollment: bool
    super_conditions: bool
    holdout: tuple[float, Any] | None
    early_exit: bool
    conditions: list[CompiledCondition]
    variants: list[tuple[str, float, float]]
    payloads: Mapping[str, Any]
    needs_state: bool = False  # has cohort or dependency filters
    # For each condition, how a match on it is decided (TARGETED, SPLIT, DEFAULT, STATIC).
    match_kinds: tuple[str, ...] = ()
    # Whether the flag gives everyone the same answer (no targeting, nothing split):
    # whatever decided a read, its "why" is STATIC (an unfiltered 0 % rollout included).
    same_for_everyone: bool = False
    # Whether a read needs the groups: a group flag, or a condition about a group.
    uses_groups: bool = False
    # The locally evaluated result of every value the flag can take, by value.
    results: Mapping[Any, FlagResult] = field(default_factory=dict)
    # The specialised evaluator of a plain person flag (see ``_fastpath``), else None.
    fast: PersonEvaluator | None = None
    hash_prefix: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.hash_prefix = f"{self.key}.".encode()

    @property
    def id(self) -> Any:
        return self.definition.get("id")

    @property
    def version(self) -> Any:
        return self.definition.get("version")


def match_kinds(flag: CompiledFlag) -> tuple[str, ...]:
    """How a match on each of the flag's conditions is decided."""
    targeted = any(c.filters for c in flag.conditions)
    held_out = flag.holdout is not None and flag.holdout[0] > 0  # some are held out
    kinds = []
    for condition in flag.conditions:
        if condition.filters:
            kinds.append(TARGETED)
            continue
        overridden = bool(condition.variant) and any(
            k == condition.variant for k, _, _ in flag.variants
        )
        if _partial(condition.rollout) or (flag.variants and not overridden) or held_out:
            kinds.append(SPLIT)
        else:
            kinds.append(DEFAULT if targeted else STATIC)
    return tuple(kinds)


def same_for_everyone(flag: CompiledFlag) -> bool:
    """Whether every person gets the same value: no condition has a filter and the
    first condition anyone matches (a rollout above 0 %) matches everyone with one value
    (no variant split, or a 100 % variant); none matching is the same ``False``."""
    if flag.enrollment or flag.super_conditions or flag.continuity:
        return False
    if flag.holdout is not None and flag.holdout[0] > 0:
        return False
    for condition in flag.conditions:
        if condition.filters:
            return False
        try:
            rollout = 100.0 if condition.rollout is None else float(condition.rollout)
        except (TypeError, ValueError):
            return False
        if rollout <= 0:
            continue  # nobody matches this one
        if rollout < 100:
            return False
        if not flag.variants or any(k == condition.variant for k, _, _ in flag.variants):
            return True
        return any(high - low >= 1 for _, low, high in flag.variants)
    return True


def _partial(rollout: Any) -> bool:
    try:
        return rollout is not None and bool(rollout < 100)
    except TypeError:  # malformed: the evaluator answers for it (or gives up)
        return True


def local_results(flag: CompiledFlag, minimal_exposure: bool) -> dict[Any, FlagResult]:
    """The result of every value the flag can take: enabled or not, each variant, the
    holdout variant. A local result depends only on the flag and the value."""
    values: list[Any] = [True, False, *(key for key, _, _ in flag.variants)]
    if flag.holdout is not None:
        values.append(f"holdout-{flag.holdout[1]}")
    results: dict[Any, FlagResult] = {}
    for value in values:
        try:
            if value not in results:
                results[value] = build_local_result(flag, value, minimal_exposure)
        except TypeError:  # an unhashable variant key: built when read
            continue
    return results


def build_local_result(flag: CompiledFlag, value: Any, minimal_exposure: bool) -> FlagResult:
    payload_key = str(value).lower() if isinstance(value, bool) else value
    try:
        payload = flag.payloads.get(payload_key) if value is not False else None
    except TypeError:
        payload = None
    payload = decode_payload(payload, flag.key, every_time=True)
    return FlagResult(
        key=flag.key,
        enabled=value is not False,
        variant=value if isinstance(value, str) else None,
        payload=payload,
        reason=LOCAL_REASON,
        locally_evaluated=True,
        id=flag.id,
        version=flag.version,
        has_experiment=experiment_flag(flag.definition.get("has_experiment")),
        minimal_exposure=minimal_exposure,
    )


def payload_of(flag: CompiledFlag, value: FlagValue) -> Any:
    """The payload a flag's definition gives ``value``, without evaluating the flag
    (``match_value``, GFP-02): ``"true"``/``"false"`` for booleans, the variant key
    otherwise, as posthog looks it up."""
    known = flag.results.get(value) if value is not False else None
    if known is not None:
        return known.payload  # decoded (and warned about) when the flag was compiled
    lookup = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        raw = flag.payloads.get(lookup)
    except (TypeError, AttributeError):
        return None
    return decode_payload(raw, flag.key)


def decision(flag: CompiledFlag, trace: list[Any]) -> str:
    """How a local value was decided, from the trace ``evaluate_flag`` filled:
    ``"inactive"``, ``"enrollment"``, ``"holdout"``, ``"no_match"``, or, for a matched
    condition, its kind (``"targeted"``, ``"split"``, ``"default"``, ``"static"``, see
    ``_compiled``)."""
    how = trace[-1] if trace else "no_match"
    if flag.same_for_everyone and how != "inactive":
        return "static"
    if isinstance(how, tuple):
        return flag.match_kinds[how[1]]
    return str(how)
