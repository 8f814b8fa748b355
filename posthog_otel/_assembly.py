"""Assembly: a message and the identity context in force become the wire event.

Property precedence, lowest first: ``$lib``/``$lib_version``/``$geoip_disable``, then
``super_properties``, then the identity context's properties, then the message's own.
The values are those of the moment (``_snapshot``): whatever the caller mutates after
the call does not change what is sent. Invalid input is counted (``invalid``) and gives
``None``; it never raises into the caller for a value it can read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ._context import IdentityContext, _current
from ._ids import as_id, normalize_uuid, uuid7
from ._log import describe
from ._options import ClientConfig, Event
from ._snapshot import ENTRY_BYTES, EVENT_BYTES, IMMUTABLE, encoded_bytes, snapshot_values
from ._stats import StatsRecorder
from ._version import __version__
from .flags import FlagEvaluations
from .messages import Alias, Capture, GroupIdentify, Identify

__all__ = ["LIB_NAME", "CaptureFields", "EventAssembler", "FlagsForEvent"]

LIB_NAME = "posthog-otel"

# ``send_feature_flags`` with loaded definitions: (event name, distinct id, groups) →
# the flags evaluated locally, or ``None`` (sent without flag properties).
FlagsForEvent = Callable[[str, object, "Mapping[str, Any] | None"], "FlagEvaluations | None"]

# A plain capture (no uuid, flags or geoip override) as fields: (event, distinct_id,
# properties, groups, timestamp).
CaptureFields = tuple[str, object, "Mapping[str, Any] | None", "Mapping[str, Any] | None", object]

_EMPTY: Mapping[str, Any] = {}
_now = time.time


class EventAssembler:
    """Builds wire events: on the caller's thread for ``enqueue``, on the flush thread
    for the integrations' deferred events (whose values were snapshotted when queued)."""

    def __init__(
        self, config: ClientConfig, stats: StatsRecorder, flags_for_event: FlagsForEvent
    ) -> None:
        self._stats = stats
        self._flags_for_event = flags_for_event
        self._disable_geoip = config.disable_geoip
        self.base_properties = _base_properties(config, config.disable_geoip)
        self._base_geoip_flipped = _base_properties(config, not config.disable_geoip)

    # ------------------------------------------------------------------ captures

    def capture(
        self, message: Capture, ctx: IdentityContext | None, copy_values: bool = True
    ) -> tuple[Event, int] | None:
        """The hot path: a capture's wire event and its estimated encoded size (``None``:
        invalid, counted). ``ctx``: the identity context in force when it happened. With
        ``copy_values`` the values of ``properties`` are copied now; identity-context
        properties were copied when the context was entered."""
        geoip = message.disable_geoip
        return self._assemble(
            message.event,
            message.distinct_id,
            message.properties,
            message.groups,
            message.timestamp,
            message.uuid,
            self.base_properties
            if geoip is None or geoip == self._disable_geoip
            else self._base_geoip_flipped,
            ctx,
            message.flags,
            message.send_feature_flags,
            copy_values,
        )

    def deferred(
        self, message: Capture | CaptureFields, ctx: IdentityContext | None
    ) -> Event | None:
        """A deferred capture's event, on the flush thread: its values were snapshotted
        on the caller's thread by the integration that queued it. ``message`` may be
        the fields of a plain capture (what the built-in builders return: a tuple costs
        the flush thread less than a ``Capture``)."""
        if type(message) is tuple:
            name, distinct_id, properties, groups, timestamp = message
            base = self.base_properties
            args = (name, distinct_id, properties, groups, timestamp, None, base, ctx)
            built = self._assemble(*args, None, False, False)
        else:
            built = self.capture(message, ctx, copy_values=False)  # type: ignore[arg-type]
        return None if built is None else built[0]

    def _assemble(
        self,
        name: object,
        distinct_id: object,
        props: Mapping[str, Any] | None,
        groups: Mapping[str, Any] | None,
        timestamp: object,
        given_uuid: object,
        base: Mapping[str, Any],
        ctx: IdentityContext | None,
        snapshot: object,
        send_feature_flags: bool,
        copy_values: bool,
    ) -> tuple[Event, int] | None:
        if type(name) is not str or not name:
            self.invalid(f"Capture.event must be a non-empty string, got {name!r}")
            return None
        if props is None:
            props = _EMPTY
        elif type(props) is not dict and not isinstance(props, Mapping):
            self.invalid(
                f"Capture.properties of {name!r} must be a mapping, not {type(props).__name__}"
            )
            return None
        if distinct_id is not None and type(distinct_id) is not str:
            try:
                distinct_id = str(distinct_id)
            except Exception as exc:
                self.invalid(f"the distinct_id of {name!r}: str() raised {describe(exc)}")
                return None
        if ctx is None:
            if not distinct_id:
                self.invalid(
                    f"Capture {name!r} has no distinct_id and there is no identity context"
                )
                return None
            properties = {**base, **props}
        else:
            properties = {**base, **ctx.properties, **props}
            if not distinct_id:
                distinct_id = ctx.distinct_id
                if not distinct_id:
                    distinct_id = uuid7()
                    properties.setdefault("$process_person_profile", False)
            if ctx.session_id and "$session_id" not in properties:
                properties["$session_id"] = ctx.session_id
        # The values of the moment (see _snapshot): scalars are kept (the loop only adds
        # up their size), anything else is copied.
        nbytes = 0  # a deferred event was measured when it was queued
        if copy_values:
            nbytes = EVENT_BYTES + len(name) + ENTRY_BYTES * len(props)
            for value in props.values():
                cls = type(value)
                if cls is str:
                    nbytes += len(value)
                elif cls not in IMMUTABLE:
                    nbytes = EVENT_BYTES + len(name)
                    nbytes += snapshot_values(props, properties, self._stats.correct, name)
                    break
        if groups:
            if not isinstance(groups, Mapping):
                self.invalid(f"Capture.groups of {name!r} must be a mapping")
                return None
            properties["$groups"] = self._copied(groups, name)
        if snapshot is not None or send_feature_flags:
            if not isinstance(snapshot, FlagEvaluations):
                snapshot = self._flags_for_event(name, distinct_id, groups)
            elif send_feature_flags:
                self._stats.warner.warn(
                    "flags_and_send_feature_flags",
                    "capture(flags=..., send_feature_flags=True): the snapshot wins",
                )
            if snapshot is not None:
                for flag_property, value in snapshot.event_properties().items():
                    properties.setdefault(flag_property, value)
        return {
            "event": name,
            "distinct_id": distinct_id,
            "properties": properties,
            "timestamp": _now() if timestamp is None else timestamp,
            "uuid": uuid7()
            if given_uuid is None
            else normalize_uuid(given_uuid) or self._replace_uuid(given_uuid),
        }, nbytes

    # ------------------------------------------------------------------ other messages

    def other(self, message: object) -> tuple[Event, int] | None:
        """An identify, alias or group event and its encoded size (these are rare: the
        size is measured, not estimated)."""
        cls = type(message)
        if cls is Identify:
            event = self.identify(message)  # type: ignore[arg-type]
        elif cls is Alias:
            event = self._alias(message)  # type: ignore[arg-type]
        elif cls is GroupIdentify:
            event = self._group_identify(message)  # type: ignore[arg-type]
        else:
            self.invalid(
                f"message must be Capture, Identify, Alias or GroupIdentify, not {cls.__name__}"
            )
            return None
        return None if event is None else (event, encoded_bytes(event))

    def identify(self, message: Identify, name: str = "$identify") -> Event | None:
        """``$identify`` (or ``$set`` / ``$set_once``, for ``client.set``/``set_once``)."""
        did = as_id(message.distinct_id)
        if not did:
            self.invalid(f"{name} needs a non-empty distinct_id")
            return None
        set_props, set_once = message.properties, message.set_once
        for field_name, value in (("properties", set_props), ("set_once", set_once)):
            if value is not None and not isinstance(value, Mapping):
                self.invalid(f"{name} {field_name} must be a mapping")
                return None
        properties = dict(self.base_properties)
        event_uuid, timestamp = self._uuid_and_time(message)
        event: Event = {
            "event": name,
            "distinct_id": did,
            "properties": properties,
            "timestamp": timestamp,
            "uuid": event_uuid,
        }
        # In properties (the form every endpoint accepts) and mirrored at top level (v0).
        try:
            if set_props is not None or name == "$identify":
                properties["$set"] = event["$set"] = self._copied(set_props or _EMPTY, name)
            if set_once is not None:
                properties["$set_once"] = event["$set_once"] = self._copied(set_once, name)
        except Exception as exc:
            self.invalid(f"{name}: reading its properties raised {describe(exc)}")
            return None
        return event

    def _alias(self, message: Alias) -> Event | None:
        previous, new = as_id(message.distinct_id), as_id(message.alias)
        if not previous or not new:
            self.invalid("Alias needs a non-empty distinct_id and alias")
            return None
        properties = {**self.base_properties, "distinct_id": previous, "alias": new}
        _add_session(properties)
        event_uuid, timestamp = self._uuid_and_time(message)
        return {
            "event": "$create_alias",
            "distinct_id": previous,
            "properties": properties,
            "timestamp": timestamp,
            "uuid": event_uuid,
        }

    def _group_identify(self, message: GroupIdentify) -> Event | None:
        group_type, group_key = as_id(message.type), as_id(message.key)
        if not group_type or not group_key:
            self.invalid("GroupIdentify needs a non-empty type and key")
            return None
        props = message.properties
        if props is not None and not isinstance(props, Mapping):
            self.invalid("GroupIdentify.properties must be a mapping")
            return None
        properties = {
            **self.base_properties,
            "$group_type": group_type,
            "$group_key": group_key,
            "$group_set": self._copied(props or _EMPTY, "$groupidentify"),
        }
        _add_session(properties)
        event_uuid, timestamp = self._uuid_and_time(message)
        return {
            "event": "$groupidentify",
            "distinct_id": as_id(message.distinct_id) or f"${group_type}_{group_key}",
            "properties": properties,
            "timestamp": timestamp,
            "uuid": event_uuid,
        }

    # ------------------------------------------------------------------ helpers

    def invalid(self, detail: str) -> None:
        """Count and warn about an invalid message; ``None`` for the caller."""
        self._stats.drop("invalid", 1, f": {detail}")

    def _copied(self, mapping: Mapping[str, Any], name: str) -> dict[str, Any]:
        """A copy of ``mapping`` with the values of the moment (``_snapshot``); raises
        if ``mapping`` itself cannot be read (the caller counts the event as invalid)."""
        copy = dict(mapping)
        snapshot_values(copy, copy, self._stats.correct, name)
        return copy

    def _uuid_and_time(self, message: Any) -> tuple[str, object]:
        given = message.uuid
        if given is None:
            event_uuid = uuid7()
        else:
            event_uuid = normalize_uuid(given) or self._replace_uuid(given)
        timestamp = message.timestamp
        return event_uuid, _now() if timestamp is None else timestamp

    def _replace_uuid(self, given: object) -> str:
        self._stats.correct("invalid_uuid", f"uuid {given!r} is not a UUID; replaced by a new one")
        return uuid7()


def _base_properties(config: ClientConfig, disable_geoip: bool) -> dict[str, Any]:
    base: dict[str, Any] = {"$lib": LIB_NAME, "$lib_version": __version__}
    if disable_geoip:
        base["$geoip_disable"] = True
    base.update(config.super_properties)
    return base


def _add_session(properties: dict[str, Any]) -> None:
    ctx = _current.get()
    if ctx is not None and ctx.session_id:
        properties.setdefault("$session_id", ctx.session_id)
