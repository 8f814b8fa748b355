"""Why local evaluation could not decide a flag."""

from __future__ import annotations

from typing import cast

# Reasons, highest precedence first (sdk-specs "unresolved flag reasons").
EXPERIENCE_CONTINUITY = "experience_continuity"
UNSUPPORTED_DEFINITION = "unsupported_definition"
UNRESOLVED_DEPENDENCY = "unresolved_dependency"
MISSING_CONTEXT = "missing_context"
_PRECEDENCE = (
    EXPERIENCE_CONTINUITY,
    UNSUPPORTED_DEFINITION,
    UNRESOLVED_DEPENDENCY,
    MISSING_CONTEXT,
)


class Unresolved(Exception):
    """Local evaluation cannot decide; ``reason`` says why."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class Inconclusive(Unresolved):
    """This filter or condition cannot be decided; later conditions may still decide."""


class NeedsServer(Unresolved):
    """Data only the server has (a static cohort, a malformed cohort): the whole flag
    goes to remote evaluation."""


def pick(current: str | None, new: str) -> str:
    """The higher-precedence of two reasons."""
    if current is None:
        return new
    return min(current, new, key=_PRECEDENCE.index)


class _Undecided:
    """See ``UNDECIDED``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDECIDED"


# What a filter returns, instead of raising, when the property it reads was not passed:
# the common "cannot decide" (a missing property), told without the cost of an
# exception. Compare with ``is``; it is neither True nor False. Typed as ``bool`` so that
# filters keep their signature.
UNDECIDED: bool = cast(bool, _Undecided())
