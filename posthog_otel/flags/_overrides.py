"""Flag property overrides (``set_person_properties_for_flags`` and friends).

Inside an identity context the overrides belong to it (they end with it, merged over
the client-level ones, innermost last); outside any, to the client. Bad input is
ignored, counted (``stats.corrected``) and warned about, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._context import IdentityContext, _current
from .._stats import StatsRecorder

__all__ = ["INVALID_FLAG_PROPERTIES", "FlagOverrides", "group_inputs"]

# Counted in ``stats.corrected``: a set_*_properties_for_flags call that was ignored.
INVALID_FLAG_PROPERTIES = "invalid_flag_properties"
Overridden = tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]]
_EMPTY: Mapping[str, Any] = {}


def group_inputs(
    groups: Mapping[str, Any] | None,
    group_properties: Mapping[str, Mapping[str, Any]] | None,
    group_overrides: Mapping[str, Mapping[str, Any]],
) -> tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]]:
    """``(groups, group_properties)`` of a read: each group's properties are its
    ``$group_key``, the overrides in force, then the call's own (which win). Built only
    when a read needs them (a group flag, a request, an exposure's ``$groups``)."""
    if not groups:
        return _EMPTY, _EMPTY
    group_map = dict(groups)
    group_props: dict[str, dict[str, Any]] = {}
    for name, key in group_map.items():
        group_props[name] = {
            "$group_key": key,
            **group_overrides.get(name, {}),
            **((group_properties or {}).get(name) or {}),
        }
    return group_map, group_props


class FlagOverrides:
    """The client-level overrides, and those of the identity contexts."""

    def __init__(self, stats: StatsRecorder) -> None:
        self._stats = stats
        # Client-level overrides; replaced on change (copy on write), never mutated.
        self._person: Mapping[str, Any] = {}
        self._groups: Mapping[str, Mapping[str, Any]] = {}

    def in_force(self, ctx: IdentityContext | None) -> Overridden:
        """The person and group overrides in force in ``ctx`` (read-only)."""
        if ctx is None:
            return self._person, self._groups
        return _with_context_overrides(ctx, self._person, self._groups)

    def person_inputs(
        self, distinct_id: object, person_properties: Mapping[str, Any] | None
    ) -> tuple[str | None, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]:
        """``(distinct_id, person_properties, group_overrides)`` of a read: the distinct
        id is the argument, else the identity context's (``None`` when neither has
        one); the person overrides in force are merged under the call's properties,
        which win. Read-only mappings."""
        ctx = _current.get()
        if type(distinct_id) is str and distinct_id:
            did: str | None = distinct_id  # the common case first
        elif distinct_id is None or distinct_id == "":
            did = ctx.distinct_id if ctx is not None else None
        else:
            did = str(distinct_id)
        person_base, group_base = self.in_force(ctx)
        person: Mapping[str, Any] = (
            {**person_base, **(person_properties or {})}
            if person_base
            else (person_properties or _EMPTY)  # read-only from here on: no copy needed
        )
        return did, person, group_base

    def for_another_thread(self) -> Overridden | None:
        """The overrides in force in the caller's identity context, for a flag request
        made on another thread (the flags worker sees no identity context); ``None``
        when no context set any."""
        ctx = _current.get()
        if ctx is None:
            return None
        person, groups = _with_context_overrides(ctx, self._person, self._groups)
        if person is self._person and groups is self._groups:
            return None
        return person, groups

    def set_person(self, properties: object) -> None:
        checked = self._checked(properties, "set_person_properties_for_flags")
        if checked is None:
            return
        ctx = _current.get()
        if ctx is None:
            self._person = {**self._person, **checked}
        else:
            own = ctx.flag_overrides
            own.person = {**(own.person or {}), **checked}

    def set_groups(self, properties: object, group_type_properties: object = None) -> None:
        """Set group overrides from a map of group type to properties, or for one group
        type: ``set_groups("company", {"plan": "pro"})`` (PFF-03's two forms)."""
        name = "set_group_properties_for_flags"
        if isinstance(properties, str):
            values = self._checked(group_type_properties, f"{name} (group {properties!r})")
            if values is None:
                return
            properties = {properties: values}
        checked = self._checked(properties, name)
        if checked is None:
            return
        updates: dict[str, dict[str, Any]] = {}
        for group, values in checked.items():
            group_values = self._checked(values, f"{name} (group {group!r})")
            if group_values is not None:
                updates[str(group)] = group_values
        ctx = _current.get()
        current = self._groups if ctx is None else (ctx.flag_overrides.groups or {})
        groups = dict(current)
        for group, values in updates.items():
            groups[group] = {**groups.get(group, {}), **values}
        if ctx is None:
            self._groups = groups
        else:
            ctx.flag_overrides.groups = groups

    def reset_person(self) -> None:
        ctx = _current.get()
        if ctx is None:
            self._person = {}
        else:
            ctx.flag_overrides.person = None

    def reset_groups(self, group_type: object = None) -> None:
        """Clear every group's overrides, or those of ``group_type`` only (PFF-05): an
        unknown type changes nothing, anything but a string is ignored (counted)."""
        ctx = _current.get()
        if group_type is None:
            if ctx is None:
                self._groups = {}
            else:
                ctx.flag_overrides.groups = None
            return
        if not isinstance(group_type, str):
            self._stats.correct(
                INVALID_FLAG_PROPERTIES,
                "reset_group_properties_for_flags: ignored a group type that is not a "
                f"string ({type(group_type).__name__})",
            )
            return
        current = self._groups if ctx is None else (ctx.flag_overrides.groups or {})
        if group_type not in current:
            return
        remaining = {name: values for name, values in current.items() if name != group_type}
        if ctx is None:
            self._groups = remaining
        else:
            ctx.flag_overrides.groups = remaining or None

    def _checked(self, properties: object, what: str) -> dict[str, Any] | None:
        """A copy of ``properties`` (a mapping), or ``None`` after counting and warning."""
        if isinstance(properties, Mapping):
            try:
                return dict(properties)
            except Exception:
                problem = "a mapping that could not be read"
        else:
            problem = f"not a mapping ({type(properties).__name__})"
        self._stats.correct(
            INVALID_FLAG_PROPERTIES, f"{what}: ignored {problem}; properties must be a mapping"
        )
        return None


def _with_context_overrides(
    ctx: IdentityContext,
    person: Mapping[str, Any],
    groups: Mapping[str, Mapping[str, Any]],
) -> tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]]:
    """The client-level overrides with those of every enclosing identity context merged
    over them, innermost last (the bases themselves when no context set any)."""
    chain: list[IdentityContext] = []
    node: IdentityContext | None = ctx
    while node is not None:
        own = node.flag_overrides
        if own.person or own.groups:
            chain.append(node)
        node = node.parent
    if not chain:
        return person, groups  # the common case: no copy
    merged_person = dict(person)
    merged_groups = {name: dict(values) for name, values in groups.items()}
    for node in reversed(chain):
        own = node.flag_overrides
        if own.person:
            merged_person.update(own.person)
        for name, values in (own.groups or {}).items():
            merged_groups[name] = {**merged_groups.get(name, {}), **values}
    return merged_person, merged_groups
