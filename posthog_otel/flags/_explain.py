"""How a flag was (or would be) decided locally, for people rather than reads.

``explain_flag`` evaluates one flag with a trace and says which condition matched;
``why_not_local`` reads a compiled flag and says, without evaluating it, why local
evaluation cannot decide it for anyone (experience continuity, a static cohort, ...).
Both serve ``FlagsService.explain`` and the ``posthog-otel`` command, so that what the
command prints is what a client's reads do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._compiled import CompiledFlag, build_local_result, decision
from ._evaluator import Definitions
from ._results import FlagResult


@dataclass(frozen=True)
class Explanation:
    """A local value and how it was decided: ``decision`` as ``_compiled.decision``
    says it; ``condition`` the 0-based index of the matched condition (``None`` when
    none matched: inactive, holdout, enrollment, no match)."""

    result: FlagResult
    decision: str
    condition: int | None


def explain_flag(
    definitions: Definitions,
    flag: CompiledFlag,
    distinct_id: str,
    groups: Mapping[str, Any],
    person_properties: Mapping[str, Any],
    group_properties: Mapping[str, Mapping[str, Any]],
    device_id: str | None = None,
) -> Explanation:
    """The local value of ``flag`` and how it was decided; raises ``Unresolved`` (with
    its reason) when only the server can decide for these inputs."""
    trace: list[Any] = []
    value = definitions.evaluate_flag(
        flag, distinct_id, groups, person_properties, group_properties, device_id, trace
    )
    result = flag.results.get(value)
    if result is None:  # a value no variant foresaw (malformed definition): built now
        result = build_local_result(flag, value, definitions.minimal_flag_called_events)
    how = trace[-1] if trace else None
    condition = how[1] if isinstance(how, tuple) else None
    return Explanation(result, decision(flag, trace), condition)


def why_not_local(definitions: Definitions, flag: CompiledFlag) -> str | None:
    """Why local evaluation cannot decide ``flag`` for anyone, or ``None`` when it can
    (given the properties its conditions read: a missing one is a read's problem, not
    the definition's). A flag that needs the server in only some conditions counts as
    needing it: a read that reaches them asks the server."""
    return _why(definitions, flag, set())


def _why(definitions: Definitions, flag: CompiledFlag, seen: set[str]) -> str | None:
    if not flag.active:
        return None  # False for everyone, locally
    seen.add(flag.key)
    try:
        definitions._compile_flag(flag.definition)  # the compiler says if it can read it
    except Exception as exc:
        return f"a definition this SDK cannot read ({exc})"
    if flag.continuity:
        return "experience continuity (only the server remembers who saw what)"
    if flag.super_conditions:
        return "early-access super conditions"
    if flag.aggregation is not None:
        if not definitions.group_type_mapping.get(str(flag.aggregation)):
            return f"group type index {flag.aggregation} is not in the group type mapping"
        if flag.enrollment:
            return "a group flag with feature enrollment"
    filters = flag.definition.get("filters") or {}
    for condition in filters.get("groups") or []:
        for prop in (condition or {}).get("properties") or []:
            reason = _why_filter(definitions, prop, seen, set())
            if reason:
                return reason
    return None


def _why_filter(
    definitions: Definitions, prop: Any, seen_flags: set[str], seen_cohorts: set[str]
) -> str | None:
    """Why one filter (or cohort property group) needs the server, if it does."""
    if not isinstance(prop, Mapping):
        return "a malformed filter"
    kind = prop.get("type")
    if kind in ("AND", "OR") or "values" in prop:
        for entry in prop.get("values") or []:
            reason = _why_filter(definitions, entry, seen_flags, seen_cohorts)
            if reason:
                return reason
        return None
    if kind == "cohort":
        cohort_id = str(prop.get("value"))
        if cohort_id not in definitions.cohorts:
            return f"static cohort {cohort_id} (only the server knows its members)"
        if (prop.get("operator") or "exact") not in ("exact", "in", "not_in"):
            return f"cohort operator {prop.get('operator')!r}"
        if cohort_id in seen_cohorts:
            return None
        seen_cohorts.add(cohort_id)
        return _why_filter(definitions, definitions.cohorts[cohort_id], seen_flags, seen_cohorts)
    if kind == "flag":
        parent_key = str(prop.get("key"))
        parent = definitions.flags.get(parent_key)
        if parent is None:
            return f"depends on flag {parent_key!r}, which is not in the definitions"
        if parent_key in seen_flags:
            return f"a dependency cycle through flag {parent_key!r}"
        reason = _why(definitions, parent, set(seen_flags))
        return f"depends on flag {parent_key!r}: {reason}" if reason else None
    return None
