"""Which structlog call ``PostHogProcessor`` captured, so ``PostHogHandler`` skips the
stdlib record of that call, and only that one.

With structlog's stdlib integration one structlog call runs the processor chain and then
hands the result to a stdlib logger, whose handlers run synchronously on the same thread
inside that same call. The record's text tells nothing reliable (a ``JSONRenderer`` or
``KeyValueRenderer`` makes it a rendered string; a later unrelated stdlib record may have
the same text as the event), so the marker names the *call* instead: the frame that
called structlog (the first frame outside structlog above its processor chain), by id,
code object and current instruction, with no reference to the frame (a marker never pins
the caller's locals). The handler skips a record only when it is being emitted by
structlog's call to the stdlib logger made from that very frame at that very instruction
(structlog's frames, and below them logging's, on the stack), that is, within the
structlog call the processor captured, after its processor chain. A record logged later,
elsewhere, or from inside a processor of the chain is never skipped.

The marker is a context variable: it never crosses threads or asyncio tasks, and structlog's
async methods run the call in a copied context that is discarded afterwards. A handler
that receives records on another thread (behind ``logging.handlers.QueueHandler``) or
later (``MemoryHandler``) cannot tell the records apart and captures them as any record.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from types import CodeType, FrameType

__all__ = ["EVENTS", "LOGS", "captured", "captured_lanes", "clear", "mark_captured"]

# What the processor sent of the call it marks (a bit mask): its analytics event (or
# ``$exception``), and its PostHog Logs record. The handler skips the same lanes only.
EVENTS = 1
LOGS = 2

# The frames looked at: enough for a structlog call wrapped in a few helpers, and for a
# handler behind a few logging frames; a bound keeps a pathological stack cheap.
_MAX_FRAMES = 48
# How far a stale marker is looked for before the handler forgets it.
_MAX_STACK = 512

# The structlog call that PostHogProcessor captured last in this context: the id, code
# object and instruction of the frame that called structlog, the code of structlog's
# function that runs the processor chain, and the lanes sent (``EVENTS | LOGS``); None
# when there is none (the handler looks at it first: one lookup when none is marked).
_Call = tuple[int, CodeType, int, CodeType, int]
captured: ContextVar[_Call | None] = ContextVar("posthog_otel_structlog_call", default=None)


def clear() -> None:
    """Forget the last captured call: ``PostHogProcessor`` does this at each call."""
    captured.set(None)


def mark_captured(lanes: int = EVENTS) -> None:
    """Remember the structlog call that is running ``PostHogProcessor`` as captured for
    ``lanes`` (``EVENTS``, ``LOGS`` or both).

    Called by the processor (on the logging thread) after it queued the event and/or
    the log record. When the
    processor was not called by structlog (called by hand, or from a ``ProcessorFormatter``
    that a stdlib handler runs), there is no stdlib record of this call to skip."""
    frame: FrameType | None = sys._getframe(1)
    runner: CodeType | None = None  # structlog's code that runs the processor chain
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return
        if _is_structlog(frame):
            runner = runner or frame.f_code
        elif runner is not None:
            if _module(frame) != "logging":
                captured.set((id(frame), frame.f_code, frame.f_lasti, runner, lanes))
            return
        frame = frame.f_back


def captured_lanes() -> int:
    """The lanes (``EVENTS``/``LOGS`` bits) ``PostHogProcessor`` sent for the structlog
    call whose stdlib record is being emitted; 0 when the record is not that call's (see
    the module docstring). Called by the handler."""
    marker = captured.get()
    if marker is None:
        return 0
    frame_id, code, lasti, runner, lanes = marker
    frame: FrameType | None = sys._getframe(1)
    steps = 0
    # From the handler up: logging's frames (and whatever wraps them, a patched
    # ``Logger.callHandlers`` say), then structlog's, then the frame that called it.
    while frame is not None and steps < _MAX_FRAMES and not _is_structlog(frame):
        frame, steps = frame.f_back, steps + 1
    in_chain = False
    structlog_frames: list[FrameType] = []
    while frame is not None and steps < _MAX_FRAMES and _is_structlog(frame):
        in_chain = in_chain or frame.f_code is runner
        structlog_frames.append(frame)
        frame, steps = frame.f_back, steps + 1
    if frame is not None and _is(frame, frame_id, code, lasti):
        # Logged from inside the call's processor chain (by a processor after ours):
        # another record, while the call, and its marker, are still running. And the
        # same caller at the same instruction may be running another structlog call
        # (a loop over loggers, a helper): its record is the captured call's only when
        # its chain has our processor, which then ran (and marked or cleared) in it.
        return lanes if not in_chain and _chain_has_processor(structlog_frames) else 0
    if not _is_running(frame_id, code, lasti):
        captured.set(None)  # that call has returned: no record of it can come any more
    return 0


def _chain_has_processor(frames: list[FrameType]) -> bool:
    """Whether the structlog logger running in ``frames`` (the bound logger that is
    ``self`` in its methods) has a ``PostHogProcessor`` in its chain; ``True`` when
    no bound logger with a chain is found (an unknown wrapper: trust the marker)."""
    module = sys.modules.get("posthog_otel.structlog")
    processor_type = getattr(module, "PostHogProcessor", None)
    if processor_type is None:
        return True
    for frame in frames:
        processors = getattr(frame.f_locals.get("self"), "_processors", None)
        if processors is not None:
            try:
                return any(isinstance(p, processor_type) for p in processors)
            except TypeError:  # not iterable: not structlog's chain
                return True
    return True


def _is_running(frame_id: int, code: CodeType, lasti: int) -> bool:
    """Whether the marked call is still on this thread's stack (a record logged from
    inside it, by another processor, say, must not make the handler forget it)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_MAX_STACK):
        if frame is None:
            return False
        if _is(frame, frame_id, code, lasti):
            return True
        frame = frame.f_back
    return True  # not looked at to the bottom: keep it (it costs a walk, never a record)


def _is(frame: FrameType, frame_id: int, code: CodeType, lasti: int) -> bool:
    # A live frame's id is unique among live objects; the code and the instruction rule
    # out a new frame that reuses the address of one that has returned.
    return frame.f_code is code and id(frame) == frame_id and frame.f_lasti == lasti


def _module(frame: FrameType) -> str:
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else ""


def _is_structlog(frame: FrameType) -> bool:
    name = _module(frame)
    return name == "structlog" or name.startswith("structlog.")
