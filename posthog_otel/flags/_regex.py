"""Regex filters: run locally only what Python's ``re`` runs exactly like the flags
service's Rust regex engine; everything else is left to the server.

A pattern is scanned once, when definitions load. The scan rewrites ``$`` to ``\\Z``
(Rust's ``$`` is end-of-string only), and defers to the server for syntax the two
engines treat differently: look-arounds and other ``(?...)`` groups except ``(?:``,
word boundaries, escapes outside a small shared set, class set operations, shorthand
classes as range endpoints, possessive or stacked quantifiers, quantified groups that
contain quantifiers, huge repetition counts and surrogates. It also records what the
pattern uses, because some inputs (non-ASCII text with ``\\w``, ``\\x1c``-``\\x1f``
with ``\\s``, a trailing newline with ``$``) are decided differently by the two engines.

The guard is about *which answer*, not *how long*: it accepts patterns that backtrack
catastrophically (``^(a|a)*$`` took 22 s on 28 characters with ``re``, every other
thread stalled). So what it accepts runs on the ``regex`` package in its ``re``-compatible
mode (``VERSION0``: the same answers as ``re``, checked by the differential tests), with a
time budget per match and the GIL released (``concurrent``). A match over budget is
inconclusive: the server, whose engine is linear, decides. ``re`` still says which
patterns are valid, so an invalid pattern matches nothing exactly as before.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from .._fork import import_fork_safe
from .._log import RateLimitedWarner
from ._errors import UNSUPPORTED_DEFINITION, Inconclusive

MATCH_BUDGET = 0.005  # seconds per match; a linear-time match of a property is far below
_COMPILED_MAX = 1024  # distinct patterns kept compiled (definitions reload often)
_SLOW_VALUES_MAX = 256  # per pattern: values that just exceeded the budget
_ANSWERS_MAX = 1024  # per pattern: remembered answers...
_ANSWERED_VALUE_MAX_CHARS = 256  # ...for values up to this long
_timeout_count = 0  # matches over budget (a statistic: not exact under races)
_warner = RateLimitedWarner()
_engine: Any = None  # the ``regex`` module, imported when a first pattern is compiled

_REPETITION = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")
_SIMPLE_ESCAPES = "dDsSwWbfnrt"
_CLASS_ESCAPABLE = r"\-[]^.$*+?(){}|"
_SHORTHANDS = (r"\d", r"\D", r"\s", r"\S", r"\w", r"\W")


class _Defer(Exception):
    pass


@dataclass(frozen=True)
class CompiledRegex:
    regex: Any  # a ``regex.Pattern`` (VERSION0)
    word_class: bool
    space_class: bool
    end_anchor: bool
    repeats_or_alternates: bool
    # Recent answers for short values (a match with a budget costs ~1.5 µs more than
    # one without; a person's properties are read again and again).
    answers: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    # A value that just ran over the budget: the next look is inconclusive at once, so
    # the shortcut and the general evaluator of one read do not both pay the budget.
    slow_values: set[str] = field(default_factory=set, compare=False, repr=False)

    def search(self, value: str) -> bool:
        """Whether the pattern occurs in ``value``; ``Inconclusive`` when only the
        server can tell for this value."""
        answers = self.answers
        known = answers.get(value)
        if known is not None:
            return known  # only values that passed the checks below are remembered
        if self.end_anchor and self.repeats_or_alternates and value.endswith("\n"):
            raise _deferred()
        if not value.isascii():
            if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
                raise _deferred()
            if self.word_class and any(
                not c.isascii() and not (c.isalpha() or c.isdecimal()) for c in value
            ):
                raise _deferred()
        if self.space_class and any(c in value for c in "\x1c\x1d\x1e\x1f"):
            raise _deferred()
        slow = self.slow_values
        if slow and value in slow:
            slow.discard(value)  # once: a later read tries again (within the budget)
            raise _over_budget()
        try:
            found: bool = (
                self.regex.search(value, concurrent=True, timeout=MATCH_BUDGET) is not None
            )
        except TimeoutError:
            if len(slow) >= _SLOW_VALUES_MAX:
                slow.clear()
            slow.add(value)
            _count_timeout()
            _warner.warn(
                "regex_budget",
                "a regex flag filter ran over its %.0f ms budget on a %d-character value; "
                "the flag is evaluated by PostHog instead",
                MATCH_BUDGET * 1000,
                len(value),
            )
            raise _over_budget() from None
        except Exception:
            raise _deferred() from None
        if len(value) <= _ANSWERED_VALUE_MAX_CHARS:
            if len(answers) >= _ANSWERS_MAX:
                answers.clear()
            answers[value] = found
        return found


def _deferred() -> Inconclusive:
    return Inconclusive(UNSUPPORTED_DEFINITION, "regex needs server evaluation")


def _over_budget() -> Inconclusive:
    return Inconclusive(UNSUPPORTED_DEFINITION, "regex over its time budget")


def timeouts() -> int:
    """How many matches ran over the budget so far (in this process)."""
    return _timeout_count


def _count_timeout() -> None:
    global _timeout_count
    _timeout_count += 1


def compile_regex(pattern: str) -> CompiledRegex | None:
    """The compiled pattern; ``None`` for an invalid one (which matches nothing, for
    ``regex`` and ``not_regex`` alike); ``Inconclusive`` for one only the server runs."""
    kind, scanner, compiled = _compile(pattern)
    if kind == "defer":
        raise _deferred()
    if kind == "invalid":
        return None
    assert scanner is not None
    return CompiledRegex(
        compiled,
        scanner.word_class,
        scanner.space_class,
        scanner.end_anchor,
        scanner.repeats_or_alternates,
    )


@functools.lru_cache(maxsize=_COMPILED_MAX)
def _compile(pattern: str) -> tuple[str, _Scanner | None, Any]:
    """Scan and compile once per pattern (bounded): ``("ok", scanner, compiled)``,
    ``("invalid", ...)`` or ``("defer", ...)``."""
    scanner = _Scanner(pattern)
    try:
        translated = scanner.run()
    except _Defer:
        return "defer", None, None
    try:
        re.compile(translated)  # validity as ``re`` sees it
    except re.error:
        return "invalid", None, None
    except Exception:
        return "defer", None, None
    engine = _regex_module()
    try:
        compiled = engine.compile(translated, engine.VERSION0)
    except Exception:
        return "defer", None, None  # valid for ``re``, not for ``regex``: not ours to run
    return "ok", scanner, compiled


def _regex_module() -> Any:
    """The ``regex`` package, imported on first use (usually on the flag poller, hence
    through the fork-safe import)."""
    global _engine
    if _engine is None:
        _engine = import_fork_safe("regex")
    return _engine


class _Scanner:
    """One pass over the pattern; ``previous`` is what a quantifier would apply to."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.out: list[str] = []
        self.class_start: int | None = None
        self.previous = ""
        self.open_groups: list[bool] = []  # per open group: holds a quantifier?
        self.last_group_quantified = False
        self.word_class = self.space_class = self.end_anchor = False
        self.repeats_or_alternates = False
        self.i = 0

    def peek(self, start: int, length: int = 1) -> str:
        return self.pattern[self.i + start : self.i + start + length]

    def run(self) -> str:
        pattern = self.pattern
        while self.i < len(pattern):
            char = pattern[self.i]
            if 0xD800 <= ord(char) <= 0xDFFF:
                raise _Defer
            if self.class_start is None:
                self._track_groups(char)
            if char == "\\":
                self._escape()
            elif char == "[":
                if self.class_start is not None:
                    raise _Defer
                self.class_start = self.i
                self.out.append(char)
            elif char == "]" and self.class_start is not None:
                self._close_class()
            elif self.class_start is not None:
                self._class_char(char)
            else:
                self._outside_class(char)
            self.i += 1
        return "".join(self.out)

    def _track_groups(self, char: str) -> None:
        self.end_anchor |= char == "$"
        self.repeats_or_alternates |= char in "*+?{|"
        if char == "(":
            self.open_groups.append(False)
        elif char == ")":
            self.last_group_quantified = self.open_groups.pop() if self.open_groups else False
            if self.open_groups:
                self.open_groups[-1] |= self.last_group_quantified
        elif char in "*+?{":
            if self.previous == ")" and self.last_group_quantified:
                raise _Defer  # a quantified group holding quantifiers: catastrophic risk
            if self.open_groups:
                self.open_groups[-1] = True

    def _escape(self) -> None:
        self.i += 1
        if self.i == len(self.pattern):
            self.out.append("\\")
            return
        escaped = self.pattern[self.i]
        if escaped == "x":
            digits = self.peek(1, 2)
            if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise _Defer
            self.out.append("\\x" + digits)
            self.i += 2
            self.previous = "literal"
            return
        if escaped in "bB<>" and self.class_start is None:
            raise _Defer
        if escaped not in _SIMPLE_ESCAPES:
            if not (0x20 <= ord(escaped) <= 0x7E and not escaped.isalnum()):
                raise _Defer
            if self.class_start is not None and escaped not in _CLASS_ESCAPABLE:
                raise _Defer
        self.word_class |= escaped in "wW"
        self.space_class |= escaped in "sS"
        self.out.append("\\" + escaped)
        self.previous = "literal"

    def _close_class(self) -> None:
        assert self.class_start is not None
        start = self.class_start
        content = start + (2 if self.pattern[start + 1 : start + 2] == "^" else 1)
        if self.i == content:
            raise _Defer
        self.class_start = None
        self.previous = "literal"
        self.out.append("]")

    def _class_char(self, char: str) -> None:
        if self.peek(0, 2) in ("&&", "--", "~~"):
            raise _Defer
        if char == "-" and self.i + 1 < len(self.pattern) and self.peek(1) != "]":
            after = self.peek(1, 2)
            before = self.pattern[self.i - 2 : self.i] if self.i >= 2 else ""
            if after in _SHORTHANDS or (
                len(before) == 2 and before[0] == "\\" and before[1] in "dDsSwW"
            ):
                raise _Defer
        self.out.append(char)

    def _outside_class(self, char: str) -> None:
        if char == "(" and self.peek(1) == "?":
            if self.peek(2) != ":":
                raise _Defer
            self.out.append("(?:")
            self.i += 2
            self.previous = "("
        elif char == "{":
            self._repetition()
        else:
            if char in "*+?":
                if self.previous in ("^", "$", "empty group") or self.peek(1) in ("+", "{"):
                    raise _Defer
                self.previous = "quantifier"
            elif char == ")" and self.previous in ("(", "empty group"):
                self.previous = "empty group"
            else:
                self.previous = char
            self.out.append(r"\Z" if char == "$" else char)

    def _repetition(self) -> None:
        match = _REPETITION.match(self.pattern, self.i)
        if match is None or self.previous in ("", "|", "(", "^", "$", "empty group", "quantifier"):
            raise _Defer
        if any(len(n) > 10 or int(n) > 0xFFFFFFFF for n in match.groups() if n):
            raise _Defer
        self.out.append(match.group())
        self.i += len(match.group()) - 1
        if self.peek(1) in ("+", "{"):
            raise _Defer
        self.previous = "quantifier"
