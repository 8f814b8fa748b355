"""Error tracking's intake: ``client.exceptions``, the seam that ``capture_exception``
and every integration sending ``$exception`` events go through (CEX-01…09).

On the caller's thread (``take``): refuse when the client does not accept events,
snapshot the exception as plain data (``_exc_snapshot``), let go of the traceback, and
apply storm protection (``_exc_dedup``); all of it counted. On the flush thread
(``event``): the ``$exception`` properties with source context (``_exc_event``), the
caller's properties (never over SDK-owned keys, EEM-20), then the pipeline's
assembly and ``before_send`` like any event (CEX-09).

Identity (CEX-01): the explicit distinct id, else the identity context's, else
personless (a random id with ``$process_person_profile: false``), also outside any
context: an error is never lost for want of a user.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._context import PERSONLESS, IdentityContext, _current, active_span_ids
from ._exc_dedup import ExceptionDedup, mark_sent
from ._exc_event import RESERVED, ExceptionsConfig, SourceLines, exception_properties
from ._exc_snapshot import (
    Boundary,
    ExcEntry,
    dedup_key,
    entries_bytes,
    snapshot_exception,
    with_overrides,
)
from ._ids import as_id, uuid7
from ._log import describe
from ._options import Event
from ._snapshot import EVENT_BYTES, snapshot_value, snapshot_values
from .messages import Capture
from .pipeline import Pipeline

__all__ = ["MANUAL", "ExceptionIntake", "Taken"]

MANUAL = Boundary(level="error", mechanism="generic", handled=True)
"""``capture_exception``'s boundary defaults (EEM-14, first row)."""
SUPPRESSED_COUNT = "$exception_suppressed_count"
FINGERPRINT = "$exception_fingerprint"

# What ``take`` hands the integration to queue: the entries and the number of identical
# captures suppressed before this one.
Taken = tuple[list[ExcEntry], int]


class ExceptionIntake:
    """``client.exceptions``: turns exceptions into ``$exception`` events."""

    def __init__(
        self,
        pipeline: Pipeline,
        config: ExceptionsConfig,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline = pipeline
        self.config = config
        self.dedup = ExceptionDedup(clock=monotonic)
        """Storm protection (its ``window`` in seconds may be changed)."""
        self._source = SourceLines()  # used on the flush thread only
        self._token = object()  # what marks an exception object as sent by this client
        self._builder = self._build

    # ------------------------------------------------------------------ caller's thread

    def capture(
        self,
        exception: object,
        distinct_id: object,
        properties: Mapping[str, Any] | None,
        *,
        level: object,
        handled: object,
        groups: Mapping[str, Any] | None,
        mechanism: Mapping[str, Any] | None,
    ) -> str | None:
        """``Client.capture_exception`` (see there). Never raises."""
        pipeline = self._pipeline
        try:
            if not pipeline.accepting:
                pipeline.refuse()
                return None
            if exception is None:
                exception = sys.exc_info()[1]
                if exception is None:
                    pipeline.drop(
                        "invalid", ": capture_exception() with no exception, outside `except`"
                    )
                    return None
            boundary = with_overrides(MANUAL, level, handled, mechanism)
            return self.send(exception, boundary, distinct_id, properties, groups)
        except Exception as exc:
            pipeline.drop("invalid", f": capture_exception raised {describe(exc)}")
            return None

    def send(
        self,
        value: object,
        boundary: Boundary,
        distinct_id: object = None,
        properties: object = None,
        groups: object = None,
        ctx: IdentityContext | None = None,
    ) -> str | None:
        """Queue ``value`` as an ``$exception`` under ``boundary`` (on the caller's
        thread; may raise: callers guard it): its uuid, or ``None`` (counted). ``ctx``:
        the identity context (``None``: the caller's)."""
        pipeline = self._pipeline
        if not pipeline.accepting:
            pipeline.refuse()
            return None
        if ctx is None:
            ctx = _current.get()
        did = as_id(distinct_id)
        taken = self.take(value, did, ctx)
        if taken is None:
            return None
        props, nbytes = self._own_properties(properties, groups)
        span = active_span_ids()
        if span is not None:
            props.setdefault("$trace_id", span[0])
            props.setdefault("$span_id", span[1])
        if did is None and (ctx is None or not ctx.distinct_id):
            ctx = ctx or PERSONLESS
        event_uuid = uuid7()
        entries, suppressed = taken
        item = (
            self._builder,
            entries,
            suppressed,
            boundary,
            did,
            props,
            ctx,
            time.time(),
            event_uuid,
        )
        if pipeline.defer(item, nbytes + entries_bytes(entries)):
            return event_uuid
        return None

    def take(
        self, value: object, distinct_id: str | None, ctx: IdentityContext | None
    ) -> Taken | None:
        """On the caller's thread: ``value`` as plain data and the number of identical
        captures suppressed before it; ``None`` when it is not to be sent (the client
        does not accept events, the object was already sent, or it repeats one sent
        within the dedup window), counted. ``value``: an exception, an ``exc_info``
        tuple or any value (CEX-02)."""
        return self.take_entries(value, snapshot_exception(value), distinct_id, ctx)

    def take_entries(
        self,
        value: object,
        entries: list[ExcEntry],
        distinct_id: str | None,
        ctx: IdentityContext | None,
    ) -> Taken | None:
        """``take`` for entries built already (from a traceback's text, say)."""
        pipeline = self._pipeline
        if not pipeline.accepting:
            pipeline.refuse()
            return None
        if not entries:
            pipeline.drop("invalid", ": an exception without any entry")
            return None
        if isinstance(value, tuple) and len(value) == 3:
            value = value[1]
        if not mark_sent(value, self._token):
            pipeline.drop("deduplicated", ": this exception object was already sent")
            return None
        person = distinct_id or (ctx.distinct_id if ctx is not None else None) or ""
        suppressed = self.dedup.admit(dedup_key(person, entries))
        if suppressed is None:
            pipeline.drop("deduplicated", f": {entries[0].type} repeated within the window")
            return None
        return entries, suppressed

    def _own_properties(self, properties: object, groups: object) -> tuple[dict[str, Any], int]:
        """The caller's properties and groups with their values of the moment."""
        correct = self._pipeline.correct
        props: dict[str, Any] = {}
        nbytes = EVENT_BYTES
        if properties is not None:
            if isinstance(properties, Mapping):
                props = dict(properties)
                nbytes += snapshot_values(props, props, correct, "$exception")
            else:
                correct(
                    "invalid_properties",
                    f"capture_exception properties must be a mapping, not "
                    f"{type(properties).__name__}; ignored",
                )
        if groups:
            if isinstance(groups, Mapping):
                props["$groups"], size = snapshot_value(dict(groups), correct, "$exception")
                nbytes += size
            else:
                correct("invalid_properties", "capture_exception groups must be a mapping; ignored")
        return props, nbytes

    # ------------------------------------------------------------------ flush thread

    def event(
        self,
        entries: list[ExcEntry],
        suppressed: int,
        boundary: Boundary | None,
        distinct_id: str | None,
        properties: Mapping[str, Any],
        ctx: IdentityContext | None,
        created: float,
        event_uuid: str | None = None,
    ) -> Event | None:
        """On the flush thread: the ``$exception`` event (through ``before_send``), or
        ``None`` (dropped, counted). ``properties``: the caller's or the integration's,
        already snapshotted; reserved keys among them are left out (EEM-16/20), but
        for a non-empty ``$exception_fingerprint``."""
        own = {key: value for key, value in properties.items() if key not in RESERVED}
        fingerprint = own.get(FINGERPRINT)
        if FINGERPRINT in own and not (isinstance(fingerprint, str) and fingerprint.strip()):
            del own[FINGERPRINT]
        own.pop(SUPPRESSED_COUNT, None)
        groups = own.pop("$groups", None)
        own.update(exception_properties(entries, boundary, self.config, self._source))
        if suppressed:
            own[SUPPRESSED_COUNT] = suppressed
        if distinct_id is None and (ctx is None or not ctx.distinct_id):
            ctx = ctx or PERSONLESS
        capture = Capture("$exception", distinct_id, own, groups, created, event_uuid)  # type: ignore[arg-type]
        return self._pipeline.finish(capture, ctx)

    def _build(
        self,
        entries: list[ExcEntry],
        suppressed: int,
        boundary: Boundary,
        distinct_id: str | None,
        properties: dict[str, Any],
        ctx: IdentityContext | None,
        created: float,
        event_uuid: str,
    ) -> Event | None:
        return self.event(
            entries, suppressed, boundary, distinct_id, properties, ctx, created, event_uuid
        )
