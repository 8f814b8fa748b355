"""The messages a client enqueues, mirroring posthog-go's message types.

Messages are frozen dataclasses: building one is cheap and does no validation or I/O.
``Client.enqueue`` validates and assembles the wire event; the flush thread serializes
it. A message is never mutated by the library, so one may be enqueued more than once.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

__all__ = ["Alias", "Capture", "GroupIdentify", "Groups", "Identify", "Message", "Properties"]

Timestamp = datetime | str
UUIDLike = str | _uuid.UUID

_B = TypeVar("_B", bound="_Builder")


class _Builder(dict[str, Any]):
    def set(self: _B, key: str, value: Any) -> _B:
        """Set ``key`` to ``value`` and return ``self``, so calls chain."""
        self[key] = value
        return self


class Properties(_Builder):
    """Event properties: ``Properties().set("plan", "pro").set("seats", 3)``."""


class Groups(_Builder):
    """Group membership of an event: ``Groups().set("company", "acme")``."""


@dataclass(frozen=True, slots=True)
class Capture:
    """An analytics event (``$pageview`` with ``$current_url`` is a pageview).

    ``distinct_id`` falls back to the identity context. ``$set``/``$set_once`` inside
    ``properties`` update the person. ``send_feature_flags`` attaches ``$feature/<key>``
    properties; a ``flags`` snapshot from ``Client.evaluate_flags`` wins over it.
    """

    event: str
    distinct_id: object = None
    properties: Mapping[str, Any] | None = None
    groups: Mapping[str, Any] | None = None
    timestamp: Timestamp | None = None
    uuid: UUIDLike | None = None
    send_feature_flags: bool = False
    flags: object | None = None
    disable_geoip: bool | None = None


@dataclass(frozen=True, slots=True)
class Identify:
    """Set person properties: sent as ``$identify`` with ``$set`` / ``$set_once``."""

    distinct_id: object
    properties: Mapping[str, Any] | None = None
    set_once: Mapping[str, Any] | None = None
    timestamp: Timestamp | None = None
    uuid: UUIDLike | None = None


@dataclass(frozen=True, slots=True)
class Alias:
    """Link ``alias`` (the new id) to the person already known as ``distinct_id``."""

    distinct_id: object
    alias: object
    timestamp: Timestamp | None = None
    uuid: UUIDLike | None = None


@dataclass(frozen=True, slots=True)
class GroupIdentify:
    """Create or update group ``type``/``key`` with ``properties`` (``$groupidentify``)."""

    type: str
    key: object
    properties: Mapping[str, Any] | None = None
    distinct_id: object = None
    timestamp: Timestamp | None = None
    uuid: UUIDLike | None = None


Message = Capture | Identify | Alias | GroupIdentify
