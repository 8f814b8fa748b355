"""A specialised evaluator for the common flag: about one person, decided by its own
property filters and rollouts.

Most flags have no cohort, dependency, group, holdout, enrollment or experience
continuity. For those, ``CompiledFlag.fast`` is a closure that runs the condition loop
with everything bound in advance (filters, rollout gates, the variant picker) and no
state or reason bookkeeping. It only answers when every filter it runs decides;
anything else (a missing property, an unusable filter, an error) makes it raise, and its
only caller, ``Definitions.evaluate_flag``, then runs the general evaluator, which
decides the way the server does. So the shortcut changes how fast a value comes back,
never which value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._compiled import CompiledFlag, PersonEvaluator
from ._hashing import rollout_gate, variant_picker
from ._results import FlagValue

_Condition = tuple[
    int,  # its index, for the trace
    tuple[Callable[..., bool], ...],  # the property filters, all of which must match
    Callable[[str], FlagValue | None] | None,  # the hash: the value, or None if rolled out
    FlagValue,  # the value of a match when no hash is needed
]


def person_evaluator(flag: CompiledFlag) -> PersonEvaluator | None:
    """The specialised evaluator of ``flag``, or ``None`` when it needs the general one."""
    if (
        not flag.active
        or flag.continuity
        or flag.super_conditions
        or flag.aggregation is not None
        or flag.device_bucketing
        or flag.enrollment
        or flag.holdout is not None
        or flag.needs_state
        or not all(math.isfinite(bound) for _, low, high in flag.variants for bound in (low, high))
    ):
        return None
    prefix = flag.hash_prefix
    conditions: list[_Condition] = []
    for condition in flag.conditions:
        rollout = condition.rollout
        if condition.aggregation is not None:
            return None  # a condition about a group
        if rollout is not None and (
            type(rollout) not in (int, float) or not math.isfinite(rollout)
        ):
            return None
        # A bucket is at most 1.0, so a rollout of 100 % or more needs no hash.
        percentage = rollout if rollout is not None and rollout < 100 else None
        override = condition.variant
        fixed = override if override and any(k == override for k, _, _ in flag.variants) else None
        settle: Callable[[str], FlagValue | None] | None = None
        outcome: FlagValue = True if fixed is None else fixed
        if flag.variants and fixed is None:
            settle = variant_picker(prefix, flag.variants, percentage)
        elif percentage is not None:
            settle = rollout_gate(prefix, percentage, outcome)
        conditions.append((len(conditions), tuple(condition.filters), settle, outcome))
    early_exit = flag.early_exit

    def evaluate(
        distinct_id: str, properties: Mapping[str, Any], trace: list[Any] | None = None
    ) -> FlagValue:
        for index, filters, settle, outcome in conditions:
            for matcher in filters:
                if not matcher(properties):  # raises when it cannot decide
                    break
            else:
                value = outcome if settle is None else settle(distinct_id)
                if value is None:  # outside the rollout
                    if early_exit:
                        break
                    continue
                if trace is not None:
                    trace.append(("condition", index))
                return value
        if trace is not None:
            trace.append("no_match")
        return False

    return evaluate
