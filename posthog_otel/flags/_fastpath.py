"""A specialised evaluator for the common flag: about one person, decided by its own
property filters and rollouts.

Most flags have no group, holdout, enrollment or experience continuity (cohort and
dependency filters get the general evaluator's state). For those, ``CompiledFlag.fast``
is a closure that runs the condition loop with everything bound in advance (filters,
rollout gates, the variant picker) and no reason bookkeeping. A missing property
leaves a condition undecided as on the server (the value is ``None`` when no later
condition decides); anything else it cannot handle (an unusable filter, an error)
makes it raise, and its only caller, ``Definitions.decide``, then runs the general
evaluator, which decides the way the server does. So the shortcut changes how fast a
value comes back, never which value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ._compiled import CompiledFlag, PersonEvaluator
from ._errors import UNDECIDED
from ._hashing import rollout_gate, variant_picker
from ._results import FlagValue

_Condition = tuple[
    int,  # its index, for the trace
    tuple[Callable[..., bool], ...],  # the property filters, all of which must match
    Callable[[str], FlagValue | None] | None,  # the hash: the value, or None if rolled out
    FlagValue,  # the value of a match when no hash is needed
]


def person_evaluator(
    flag: CompiledFlag, new_state: Callable[[str], Any] | None = None
) -> PersonEvaluator | None:
    """The specialised evaluator of ``flag``, or ``None`` when it needs the general one.

    ``new_state(distinct_id)``: the general evaluator's state of one evaluation, for a
    flag with cohort or dependency filters (they read it); without it such a flag is
    left to the general evaluator."""
    if (
        not flag.active
        or flag.continuity
        or flag.super_conditions
        or flag.aggregation is not None
        or flag.device_bucketing
        or flag.enrollment
        or flag.holdout is not None
        or (flag.needs_state and new_state is None)
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
    stateful = new_state if flag.needs_state else None

    def evaluate(
        distinct_id: str, properties: Mapping[str, Any], trace: list[Any] | None = None
    ) -> FlagValue | None:
        state = None if stateful is None else stateful(distinct_id)
        undecided = False  # a condition left undecided by a missing property
        for index, filters, settle, outcome in conditions:
            missing = False
            for matcher in filters:
                matched = matcher(properties, state)  # raises when it cannot decide otherwise
                if matched is UNDECIDED:
                    missing = True
                elif not matched:
                    break
            else:
                if missing:
                    undecided = True
                    continue
                value = outcome if settle is None else settle(distinct_id)
                if value is None:  # outside the rollout
                    if early_exit:
                        break
                    continue
                if trace is not None:
                    trace.append(("condition", index))
                return value
        if undecided:
            return None  # as the general evaluator: only the server can answer
        if trace is not None:
            trace.append("no_match")
        return False

    return evaluate
