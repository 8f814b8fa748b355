"""Queue items → encoded events, on a background thread: deferred items are built here
(``build(*args)``), every event is encoded once by its lane and measured against the
lane's per-event limit and the batch's byte budget. Used by the exporter for a batch
and by the spool for the events it writes."""

from __future__ import annotations

from collections.abc import Callable

from .._stats import StatsRecorder
from ._batch import Deferred, Event, Lane

# ``give_way`` runs between slices of this many items (a power of two).
SLICE = 64
_SLICE_MASK = SLICE - 1

__all__ = ["encode_items"]


def encode_items(
    raw: list[Event | Deferred],
    lane: Lane,
    stats: StatsRecorder,
    events: list[Event],
    payloads: list[bytes],
    size: int,
    budget: float,
    failed: list[tuple[str, str]],
    give_way: Callable[[], None] | None = None,
) -> tuple[int, int, tuple[Event, bytes] | None]:
    """Append the events of ``raw`` and their payloads to ``events``/``payloads`` while
    the encoded total (``size`` so far) stays within ``budget``.

    Returns ``(skipped, stop, overflow)``: ``skipped`` deferred items turned out not to
    be events (their builder counted why; a builder that raised is counted ``invalid``
    here), ``raw[stop:]`` were not taken, and ``overflow`` is the built and encoded
    ``raw[stop]`` that did not fit (``None`` when all fitted). An event that cannot be
    encoded or is over the lane's limit goes to ``failed`` as ``(reason, detail)``, for
    the caller to settle as a drop. ``give_way`` (if given) is called between slices of
    ``SLICE`` items."""
    skipped = 0
    # Once per event on the flush thread, which competes with the application's threads
    # for the GIL: the common case is inlined (no call per event besides the builder's
    # and the encoder's); failures take the slower paths.
    encode = lane.encode
    limit = lane.max_event_bytes
    for index, item in enumerate(raw):
        if not index & _SLICE_MASK and index and give_way is not None:
            give_way()
        if isinstance(item, dict):
            event = item
        else:
            try:
                built: Event | None = item[0](*item[1:])
            except BaseException as exc:  # user code (before_send) may raise SystemExit
                stats.drop(
                    "invalid", 1, f": building a deferred event raised {type(exc).__qualname__}"
                )
                built = None
            if built is None:
                skipped += 1
                continue
            event = built
        try:
            payload = encode(event)
        except Exception as exc:
            failed.append(("serialization", f": {type(exc).__name__} in {_label(event, lane)}"))
            continue
        nbytes = len(payload)
        if nbytes > limit:
            detail = f": {_label(event, lane)} is {nbytes} bytes (limit {limit})"
            failed.append(("oversize", detail))
            continue
        if size + nbytes + 1 > budget and events:
            return skipped, index, (event, payload)
        events.append(event)
        payloads.append(payload)
        size += nbytes + 1
    return skipped, len(raw), None


def _label(item: Event, lane: Lane) -> str:
    """How a warning names an item: an event or span by its name (never a log record's
    body, which may be anything the application logged)."""
    name = item.get("event", item.get("name"))
    return f"{lane.noun} {name!r}" if isinstance(name, str) else f"a {lane.noun}"
