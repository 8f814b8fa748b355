"""Property filters compiled once, when definitions load, into matchers.

A matcher takes the properties of the evaluation and answers ``True``/``False``, or
``UNDECIDED`` when the property was not passed (the common case of "cannot know", told
without an exception), or raises ``Inconclusive`` when local evaluation cannot know for
another reason (the filter is unusable, the value cannot be compared the way the server
would).
Everything that depends only on the filter (parsed numbers, versions, absolute dates,
compiled regexes, rendered strings) is computed here, not per evaluation.
"""

from __future__ import annotations

import operator as operator_
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from . import _values as v
from ._errors import MISSING_CONTEXT, UNDECIDED, UNSUPPORTED_DEFINITION, Inconclusive
from ._regex import compile_regex

Properties = Mapping[str, Any]
# A matcher takes the properties (and an evaluation state that property filters ignore,
# so that the evaluator calls every kind of filter the same way, without an adapter).
Matcher = Callable[..., bool]

_TEXT = (
    "icontains",
    "not_icontains",
    "starts_with",
    "not_starts_with",
    "ends_with",
    "not_ends_with",
)
_NUMERIC = ("gt", "gte", "lt", "lte")
_DATES = ("is_date_before", "is_date_after")
_SEMVER_COMPARE = ("semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte")
_SEMVER_RANGE = ("semver_tilde", "semver_caret", "semver_wildcard")
OPERATORS = frozenset(
    (
        *("exact", "is_not", "is_set", "is_not_set", "regex", "not_regex"),
        *_TEXT,
        *_NUMERIC,
        *_DATES,
        *_SEMVER_COMPARE,
        *_SEMVER_RANGE,
    )
)


def _unsupported(message: str) -> Inconclusive:
    return Inconclusive(UNSUPPORTED_DEFINITION, message)


def _always_unsupported(message: str) -> Matcher:
    def matcher(properties: Properties, state: object = None) -> bool:
        raise _unsupported(message)

    return matcher


def compile_property(prop: Mapping[str, Any], matching_version: int) -> Matcher:
    """The matcher for one person or group property filter."""
    key: Any = prop.get("key")
    operator = prop.get("operator") or "exact"
    value = prop.get("value")
    if operator not in OPERATORS:
        return _always_unsupported(f"unknown operator {operator!r}")
    if operator in ("is_set", "is_not_set"):
        result = operator == "is_set"

        def is_set(properties: Properties, state: object = None) -> bool:
            if key not in properties:
                return UNDECIDED  # not passed: cannot decide (no exception)
            return result

        return is_set
    if operator in _NUMERIC:
        return _numeric(key, operator, value)
    if operator in ("exact", "is_not"):
        return _exact(key, value, matching_version, negate=operator == "is_not")
    return _on_property(key, _compile_comparison(operator, value))


def _on_property(key: Any, compare: Callable[[Any], bool]) -> Matcher:
    """The matcher that applies ``compare`` to the property ``key``, which must be passed."""

    def matcher(properties: Properties, state: object = None) -> bool:
        if key not in properties:
            return UNDECIDED  # not passed: cannot decide (no exception)
        return compare(properties[key])

    return matcher


def _compile_comparison(operator: str, value: Any) -> Callable[[Any], bool]:
    if operator in _TEXT:
        return _text(operator, value)
    if operator in ("regex", "not_regex"):
        return _regex(operator, value)
    # Dates and versions: a null value simply does not match (before the filter is read);
    # both comparisons check for it first.
    return _dates(operator, value) if operator in _DATES else _semver(operator, value)


# The two most common filters, numbers and lists of values, are one closure each, with
# the property read inlined: no inner comparison call on every read.

_EXACT_INT = 2**53  # every int below this in size is exactly a float
_NUMERIC_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator_.gt,
    "gte": operator_.ge,
    "lt": operator_.lt,
    "lte": operator_.le,
}


def _numeric(key: Any, operator: str, value: Any) -> Matcher:
    bound = v.to_number(value)
    if bound is None:
        return _on_property(key, _raise_always("the numeric filter is not a finite number"))
    test = _NUMERIC_TESTS[operator]

    def numeric(properties: Properties, state: object = None) -> bool:
        if key not in properties:
            return UNDECIDED  # not passed: cannot decide (no exception)
        found = properties[key]
        if type(found) is int and -_EXACT_INT < found < _EXACT_INT:
            return test(found, bound)  # int against float compares exactly in Python
        number = v.to_number(found)
        return False if number is None else test(number, bound)

    return numeric


def _raise_always(message: str) -> Callable[[Any], bool]:
    def compare(override: Any) -> bool:
        raise _unsupported(message)

    return compare


def _exact(key: Any, value: Any, version: int, *, negate: bool) -> Matcher:
    """Text against the filter's texts, case-insensitively; or, for an empty list and
    (matching version 1) booleans, truthiness."""
    if value == []:

        def test(override: Any) -> bool:
            return v.is_truthy(override)

    elif version != 2 and v.is_boolean_like(value):
        expected = v.is_truthy(value)

        def test(override: Any) -> bool:
            return v.is_truthy(override) == expected

    else:
        try:
            items = value if isinstance(value, list) else [value]
            candidates = frozenset(v.to_text(i, UNSUPPORTED_DEFINITION).lower() for i in items)
        except Inconclusive as error:
            message = str(error)

            def test(override: Any) -> bool:
                raise _unsupported(message)

        else:

            def exact(properties: Properties, state: object = None) -> bool:
                if key not in properties:
                    return UNDECIDED  # not passed: cannot decide (no exception)
                found = properties[key]
                text = found if type(found) is str else v.to_text(found, MISSING_CONTEXT)
                return (text.lower() in candidates) != negate

            return exact

    def compare(override: Any) -> bool:
        v.to_text(override, MISSING_CONTEXT)  # a value JSON cannot render: inconclusive
        matched = test(override)
        return not matched if negate else matched

    return _on_property(key, compare)


def _text(operator: str, value: Any) -> Callable[[Any], bool]:
    try:
        needle = v.ascii_lower(value, UNSUPPORTED_DEFINITION)
    except Inconclusive as error:
        message = str(error)

        def unusable(override: Any) -> bool:
            v.ascii_lower(override, MISSING_CONTEXT)
            raise _unsupported(message)

        return unusable
    negate = operator.startswith("not_")
    if operator.endswith("icontains"):

        def found(text: str) -> bool:
            return needle in text

    elif operator.endswith("starts_with"):

        def found(text: str) -> bool:
            return text.startswith(needle)

    else:

        def found(text: str) -> bool:
            return text.endswith(needle)

    def compare(override: Any) -> bool:
        matched = found(v.ascii_lower(override, MISSING_CONTEXT))
        return not matched if negate else matched

    return compare


def _regex(operator: str, value: Any) -> Callable[[Any], bool]:
    pattern = str(value)
    negate = operator == "not_regex"
    if pattern == "":
        return lambda override: (v.to_text(override, MISSING_CONTEXT), not negate)[1]
    try:
        compiled = compile_regex(pattern)
    except Inconclusive as error:
        message = str(error)

        def deferred(override: Any) -> bool:
            v.to_text(override, MISSING_CONTEXT)
            raise _unsupported(message)

        return deferred
    if compiled is None:  # an invalid pattern matches nothing, negated or not
        return lambda override: (v.to_text(override, MISSING_CONTEXT), False)[1]

    def compare(override: Any) -> bool:
        matched = compiled.search(v.to_text(override, MISSING_CONTEXT))
        return not matched if negate else matched

    return compare


def _dates(operator: str, value: Any) -> Callable[[Any], bool]:
    text = str(value)
    before = operator == "is_date_before"
    now = datetime.now(timezone.utc)
    relative = v.relative_parts(text)
    if relative is not None and v.relative_date(text, now) is not None:
        number, interval = relative
        if interval in "hdw":
            delta = timedelta(**{{"h": "hours", "d": "days", "w": "weeks"}[interval]: number})

            def bound() -> datetime:
                return datetime.now(timezone.utc) - delta

        else:

            def bound() -> datetime:
                resolved = v.relative_date(text, datetime.now(timezone.utc))
                assert resolved is not None
                return resolved

    else:
        try:
            if v._YEAR.fullmatch(text.strip()):
                # A bare year means "that year, today": resolved at evaluation time.
                v.parse_datetime(text)

                def bound() -> datetime:
                    return v.aware(v.parse_datetime(text))

            else:
                fixed = v.aware(v.parse_datetime(text))

                def bound() -> datetime:
                    return fixed

        except Exception:
            return _null_or_raise("the date set on the flag is not a valid format")

    def compare(override: Any) -> bool:
        if override is None:
            return False
        try:
            limit = bound()
        except Exception:
            raise _unsupported("the date set on the flag is not a valid format") from None
        moment = v.date_of(override)
        if isinstance(moment, datetime):
            return moment < limit if before else moment > limit
        day = limit.date()
        return moment < day if before else moment > day

    return compare


def _semver(operator: str, value: Any) -> Callable[[Any], bool]:
    try:
        if operator in _SEMVER_RANGE:
            lower, upper = v.version_range(operator, value)
        else:
            target = v.parse_version(value)
    except (ValueError, TypeError):
        return _null_or_raise(f"{value!r} is not a valid version for {operator}")

    def parse(override: Any) -> v.Version:
        version = _VERSIONS.get(override) if type(override) is str else None
        if version is None:
            try:
                version = v.parse_version(override)
            except (ValueError, TypeError):
                raise Inconclusive(MISSING_CONTEXT, "not a version") from None
            if type(override) is str:
                if len(_VERSIONS) >= _VERSIONS_MAX:
                    _VERSIONS.clear()  # bounded: a flood of distinct strings starts over
                _VERSIONS[override] = version
        return version

    if operator in _SEMVER_RANGE:
        return lambda override: override is not None and lower <= parse(override) < upper
    compare = _SEMVER_COMPARISONS[operator]
    return lambda override: override is not None and compare(parse(override), target)


# Versions people report repeat (an app's releases): each string is parsed once.
_VERSIONS: dict[str, v.Version] = {}
_VERSIONS_MAX = 4096

_SEMVER_COMPARISONS: dict[str, Callable[[v.Version, v.Version], bool]] = {
    "semver_eq": lambda a, b: a == b,
    "semver_neq": lambda a, b: a != b,
    "semver_gt": lambda a, b: a > b,
    "semver_gte": lambda a, b: a >= b,
    "semver_lt": lambda a, b: a < b,
    "semver_lte": lambda a, b: a <= b,
}


def _null_or_raise(message: str) -> Callable[[Any], bool]:
    """For an unusable date or version filter: a null value still simply does not match."""

    def compare(override: Any) -> bool:
        if override is None:
            return False
        raise _unsupported(message)

    return compare
