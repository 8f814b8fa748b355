"""Value conversions the property operators share, matching PostHog's flags service:
how a value is rendered as a string, what counts as truthy, numbers, versions, dates."""

from __future__ import annotations

import calendar
import json
import math
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ._errors import MISSING_CONTEXT, Inconclusive

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RELATIVE = re.compile(r"^-?(?P<number>[0-9]+)(?P<interval>[a-z])$")
_YEAR = re.compile(r"\d{4}")
_SPACED_OFFSET = re.compile(r" ([+-]\d{2}:\d{2})$")


# ---------------------------------------------------------------- strings


def to_text(value: Any, reason: str) -> str:
    """A string as-is; anything else as the server's compact JSON (sorted keys, JSON
    floats). ``reason`` blames the filter or the call when it cannot be rendered."""
    if isinstance(value, str):
        return value
    return _json(value, reason)


def ascii_lower(value: Any, reason: str) -> str:
    return to_text(value, reason).translate(_ASCII_LOWER)


def _json(value: Any, reason: str) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_json(item, reason) for item in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise Inconclusive(reason, "object keys must be strings")
        return (
            "{"
            + ",".join(
                json.dumps(key, ensure_ascii=False) + ":" + _json(value[key], reason)
                for key in sorted(value)
            )
            + "}"
        )
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value, reason)
    raise Inconclusive(reason, f"{type(value).__name__} is not a JSON value")


def _json_float(value: float, reason: str) -> str:
    if not math.isfinite(value):
        raise Inconclusive(reason, "non-finite number")
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent_text = text.split("e")
    exponent = int(exponent_text)
    if -6 < exponent < 0:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if exponent >= 0 else ''}{exponent}"


def is_boolean_like(value: Any) -> bool:
    """A bool, ``"true"``/``"false"`` in any case, or a list of only those."""
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.lower() in ("true", "false")
    if isinstance(value, list):
        return all(is_boolean_like(item) for item in value)
    return False


def is_truthy(value: Any) -> bool:
    """``True``, ``"true"`` in any case, or a list whose items are all truthy."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() == "true"
    if isinstance(value, list):
        return all(is_truthy(item) for item in value)
    return False


# ---------------------------------------------------------------- numbers


def to_number(value: Any) -> float | None:
    """A finite float from a number or a plain numeric string; else ``None``."""
    kind = type(value)
    if kind is int:  # the common cases first (bool is not int here: type() is exact)
        try:
            return float(value)
        except OverflowError:
            return None
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    if isinstance(value, str) and not _NUMERIC.fullmatch(value):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------- versions

Version = tuple[int, int, int]


def _identifier(part: str) -> int:
    if not part or not part.isdigit():
        raise ValueError(part)
    if len(part) > 1 and part[0] == "0":
        raise ValueError(part)
    return int(part)


def parse_version(value: Any) -> Version:
    """(major, minor, patch) of a semver-ish string; ``ValueError`` when it is not one."""
    text = str(value).strip().lstrip("vV").split("-")[0].split("+")[0]
    parts = text.split(".")
    if not parts[0]:
        raise ValueError(text)
    major = _identifier(parts[0])
    minor = _identifier(parts[1]) if len(parts) > 1 and parts[1] else 0
    patch = _identifier(parts[2]) if len(parts) > 2 and parts[2] else 0
    return major, minor, patch


def version_range(operator: str, value: Any) -> tuple[Version, Version]:
    """[lower, upper) for ``semver_tilde``, ``semver_caret`` and ``semver_wildcard``."""
    if operator == "semver_wildcard":
        cleaned = str(value).strip().lstrip("vV").replace("*", "").rstrip(".")
        parts = [p for p in cleaned.split(".") if p]
        if not parts:
            raise ValueError(value)
        numbers = [_identifier(p) for p in parts[:3]]
        if len(numbers) == 1:
            return (numbers[0], 0, 0), (numbers[0] + 1, 0, 0)
        if len(numbers) == 2:
            return (numbers[0], numbers[1], 0), (numbers[0], numbers[1] + 1, 0)
        major, minor, patch = numbers
        return (major, minor, patch), (major, minor, patch + 1)
    major, minor, patch = parse_version(str(value))
    if operator == "semver_tilde":
        return (major, minor, patch), (major, minor + 1, 0)
    if major > 0:
        return (major, minor, patch), (major + 1, 0, 0)
    if minor > 0:
        return (0, minor, patch), (0, minor + 1, 0)
    return (0, 0, patch), (0, 0, patch + 1)


# ---------------------------------------------------------------- dates


def parse_datetime(value: str) -> datetime:
    """An ISO-8601 datetime, also with ``Z``, `` UTC`` or a space before the offset;
    a bare 4-digit year means that year on today's month and day."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif text.upper().endswith(" UTC"):
        text = text[:-4] + "+00:00"
    elif len(text) == 4 and _YEAR.fullmatch(text):
        today = datetime.now()
        return datetime(int(text), today.month, today.day)
    if " " in text:
        text = _SPACED_OFFSET.sub(r"\1", text)
    return datetime.fromisoformat(text)


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def relative_parts(value: str) -> tuple[int, str] | None:
    """(number, interval letter) of a relative date such as ``-7d``, else ``None``."""
    match = _RELATIVE.search(value)
    if match is None:
        return None
    return int(match.group("number")), match.group("interval")


def relative_date(value: str, now: datetime) -> datetime | None:
    """``-7d``, ``12h``, ``3w``, ``6m``, ``1y`` before ``now``; ``None`` if ``value`` is
    not such a date (or is out of range)."""
    match = _RELATIVE.search(value)
    if match is None:
        return None
    number = int(match.group("number"))
    if number >= 10_000:
        return None
    interval = match.group("interval")
    if interval == "h":
        return now - timedelta(hours=number)
    if interval == "d":
        return now - timedelta(days=number)
    if interval == "w":
        return now - timedelta(weeks=number)
    if interval == "m":
        return _months_before(now, number)
    if interval == "y":
        return _years_before(now, number)
    return None


def _months_before(moment: datetime, months: int) -> datetime | None:
    # One month at a time, clamping the day at each step (Mar 31 - 2m = Jan 28).
    current = moment.year * 12 + moment.month - 1
    target = current - months
    year, month = target // 12, target % 12 + 1
    if not 1 <= year <= 9999:
        return None
    day = moment.day
    for index in range(current - 1, target - 1, -1):
        if day <= 28:
            break
        day = min(day, calendar.monthrange(index // 12, index % 12 + 1)[1])
    return moment.replace(year=year, month=month, day=day)


def _years_before(moment: datetime, years: int) -> datetime | None:
    year = moment.year - years
    if not 1 <= year <= 9999:
        return None
    day = 28 if years > 0 and (moment.month, moment.day) == (2, 29) else moment.day
    return moment.replace(year=year, day=day)


def date_of(value: Any) -> date | datetime:
    """A call-supplied date value, made comparable; ``Inconclusive`` when it is not one."""
    if isinstance(value, datetime):
        return aware(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        parsed = _parsed_dates.get(value)
        if parsed is None:
            try:
                parsed = aware(parse_datetime(value))
            except Exception:
                raise Inconclusive(MISSING_CONTEXT, "not a date") from None
            if len(value.strip()) != 4:  # a bare year depends on today: never memoized
                if len(_parsed_dates) >= _PARSED_DATES_MAX:
                    _parsed_dates.clear()
                _parsed_dates[value] = parsed
        return parsed
    raise Inconclusive(MISSING_CONTEXT, "not a date")


# A person's date properties come back call after call: parse each string once.
_PARSED_DATES_MAX = 4096
_parsed_dates: dict[str, datetime] = {}
