"""Generated local-evaluation cases: random definitions exercising every operator,
cohorts, dependencies, groups, multivariate flags, holdouts and float rollouts, with
random properties and ids. Deterministic for a given seed."""

from __future__ import annotations

import copy
import random
from datetime import date, datetime, timedelta, timezone
from typing import Any

PERSON_KEYS = ["email", "plan", "age", "version", "signup", "score", "country", "flag"]
GROUP_TYPES = {"0": "company", "1": "project"}
OPERATORS = [
    "exact",
    "is_not",
    "is_set",
    "is_not_set",
    "icontains",
    "not_icontains",
    "regex",
    "not_regex",
    "starts_with",
    "not_starts_with",
    "ends_with",
    "not_ends_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "is_date_before",
    "is_date_after",
    "semver_eq",
    "semver_neq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
    "semver_tilde",
    "semver_caret",
    "semver_wildcard",
    None,
    "bogus_operator",
]
STRINGS = [
    "pro",
    "PRO",
    "free",
    "a@example.com",
    "Straße",
    "ΣΑΣ",
    "true",
    "False",
    "",
    "null",
    "1.2.3",
    "v2.0",
    "0.0.4",
    "1.*",
    "10",
    "9.5",
    "-3",
    "1e3",
    "  7 ",
    "2024-01-02",
    "2026-11-01T10:00:00Z",
    "-7d",
    "3m",
    "1y",
    "12h",
    "2w",
    "10000d",
    "2025",
    "abc\n",
    "aaab",
    "x\n",
    "e\u0301",
    "a\x1cb",
    "word one",
    "ab ab",
    "\u00b2",
]
REGEXES = [
    "^pro$",
    "pro",
    "[a-z]+@example\\.com",
    "^\\d+$",
    "(a|b)*c",
    "\\bword",
    "(?=x)",
    "[",
    "",
    "\\w+",
    "\\s",
    "a{2,3}",
    "(ab)+",
    "x$",
    "\\x41",
    "(?:p)ro",
    "[^a]",
    "(a+)+",
    "(a*)*b",
    "a++",
    "a{2}{3}",
    "[\\d-z]",
    "[a&&b]",
    "^\\w+$",
    "a|b$",
    "\\s+",
    "()*",
    "[]a]",
    "\\p{L}",
    "\\d{1,99999999999}",
    "(?i)pro",
    "\\Bx",
    "[\\w-]",
    "a{,3}",
    "\\.",
    "\\ud800",
]


def scalar(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.45:
        return rng.choice(STRINGS)
    if pick < 0.6:
        return rng.choice([0, 1, 7, 10, 42, -3, 2**53 + 1])
    if pick < 0.72:
        return rng.choice([0.5, 9.5, 10.0, 1e-5, 1e16, 323.0, -0.0, float("nan")])
    if pick < 0.82:
        return rng.choice([True, False])
    if pick < 0.88:
        return None
    if pick < 0.94:
        return [scalar(rng) for _ in range(rng.randint(0, 2))]
    return {"b": 1, "a": [True, None]}


def filter_value(rng: random.Random, operator: str | None) -> Any:
    if operator in ("regex", "not_regex"):
        return rng.choice(REGEXES)
    if operator and operator.startswith("semver"):
        return rng.choice(["1.2.3", "v1.2", "0.0.4", "1.*", "1.2.*", "2", "01.2", "x", "0.3.1"])
    if operator in ("is_date_before", "is_date_after"):
        return rng.choice(
            [
                "-7d",
                "3m",
                "1y",
                "12h",
                "2w",
                "2025-06-01",
                "2026-11-01T10:00:00Z",
                "2025",
                "10000d",
                "not a date",
                "2024-02-29 00:00:00 UTC",
            ]
        )
    if operator in ("gt", "gte", "lt", "lte"):
        return rng.choice([10, "10", 9.5, "1e3", "abc", True, None, "-3"])
    return scalar(rng)


def property_value(rng: random.Random, key: str) -> Any:
    if key == "signup" and rng.random() < 0.7:
        now = datetime.now(timezone.utc)
        return rng.choice(
            [
                (now - timedelta(days=rng.randint(0, 800))).isoformat(),
                now - timedelta(hours=rng.randint(0, 100)),
                date(2025, 1, 1),
                "garbage",
                datetime(2025, 6, 1),
            ]
        )
    if key == "version" and rng.random() < 0.7:
        return rng.choice(["1.2.3", "1.2.4", "v1.3.0", "0.0.4", "2.0.0-beta", "1", "bad", 3])
    return scalar(rng)


def property_filter(rng: random.Random, group_index: int | None = None) -> dict[str, Any]:
    operator = rng.choice(OPERATORS)
    prop: dict[str, Any] = {
        "key": rng.choice(PERSON_KEYS),
        "value": filter_value(rng, operator),
        "type": "person" if group_index is None else "group",
    }
    if operator is not None:
        prop["operator"] = operator
    if group_index is not None:
        prop["group_type_index"] = group_index
    if rng.random() < 0.1:
        prop["negation"] = True
    return prop


def cohort_group(rng: random.Random, depth: int, cohort_ids: list[str]) -> Any:
    if rng.random() < 0.05:
        return {}
    values: list[Any] = []
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.2 and depth < 2:
            values.append(cohort_group(rng, depth + 1, cohort_ids))
        elif roll < 0.3 and cohort_ids:
            values.append(
                {
                    "key": "id",
                    "type": "cohort",
                    "value": int(rng.choice(cohort_ids)),
                    "negation": rng.random() < 0.3,
                }
            )
        else:
            values.append(property_filter(rng))
    return {"type": rng.choice(["AND", "OR"]), "values": values}


def definitions(rng: random.Random) -> dict[str, Any]:
    cohorts: dict[str, Any] = {}
    for cohort_id in ("1", "2", "3"):
        cohorts[cohort_id] = cohort_group(rng, 0, list(cohorts))
    if rng.random() < 0.05:
        cohorts["4"] = {"type": "XOR", "values": []}
    flags: list[dict[str, Any]] = []
    for index in range(rng.randint(1, 4)):
        flags.append(flag(rng, f"flag-{index}", [f["key"] for f in flags], flags))
    return {
        "flags": flags,
        "group_type_mapping": dict(GROUP_TYPES),
        "cohorts": cohorts,
        "property_matching_version": rng.choice([1, 2, None]),
    }


def flag(rng: random.Random, key: str, earlier: list[str], earlier_defs: list) -> dict[str, Any]:
    aggregation = rng.choice([None, None, None, 0, 1, 3])
    variants = None
    if rng.random() < 0.35:
        names = ["control", "test", "third"][: rng.randint(1, 3)]
        split = [rng.choice([10, 33.3, 50, 25.5, 0]) for _ in names]
        variants = {
            "variants": [
                {"key": n, "rollout_percentage": p} for n, p in zip(names, split, strict=True)
            ]
        }
    groups = []
    for _ in range(rng.randint(0, 3)):
        properties = []
        for _ in range(rng.randint(0, 3)):
            roll = rng.random()
            if roll < 0.12:
                properties.append(
                    {
                        "key": "id",
                        "type": "cohort",
                        "value": rng.choice([1, 2, 3, 4, 99]),
                        "operator": rng.choice(["in", "not_in", "exact", None, "gt"]),
                    }
                )
            elif roll < 0.22 and earlier:
                parent = rng.choice(earlier)
                chain = (
                    [parent] if rng.random() < 0.8 else rng.choice([[], None, ["missing", parent]])
                )
                dep: dict[str, Any] = {
                    "key": parent,
                    "type": "flag",
                    "operator": rng.choice(["flag_evaluates_to"] * 5 + ["exact"]),
                    "value": rng.choice([True, False, "control", "test", None]),
                }
                if chain is not None:
                    dep["dependency_chain"] = chain
                properties.append(dep)
            else:
                properties.append(property_filter(rng, aggregation))
        condition: dict[str, Any] = {
            "properties": properties,
            "rollout_percentage": rng.choice([None, 0, 100, 45, 12.5, 99.9, 50]),
        }
        if variants and rng.random() < 0.3:
            condition["variant"] = rng.choice(["control", "test", "nope", None])
        if aggregation is None and rng.random() < 0.1:
            condition["aggregation_group_type_index"] = rng.choice([0, 1, 3, None])
        groups.append(condition)
    filters: dict[str, Any] = {"groups": groups, "multivariate": variants, "payloads": {}}
    if aggregation is not None:
        filters["aggregation_group_type_index"] = aggregation
    if rng.random() < 0.1:
        filters["holdout"] = {"id": 7, "exclusion_percentage": rng.choice([0, 20, 100, 150])}
    if rng.random() < 0.1:
        filters["early_exit"] = True
    if rng.random() < 0.05:
        filters["feature_enrollment"] = True
    bucketing = rng.random()
    if bucketing < 0.08:
        filters["bucketing_identifier"] = "device_id"
    elif bucketing < 0.12:
        flag_bucketing = rng.choice(["device_id", "distinct_id", None])
    if rng.random() < 0.03:
        filters["super_groups"] = [
            {"properties": [property_filter(rng)], "rollout_percentage": 100}
        ]
    flag = {
        "id": len(earlier) + 1,
        "key": key,
        "version": 1,
        "filters": filters,
        "active": rng.random() > 0.07,
        "ensure_experience_continuity": rng.random() < 0.04,
    }
    if 0.08 <= bucketing < 0.12:
        flag["bucketing_identifier"] = flag_bucketing  # on the flag, not in its filters
    return flag


def call(rng: random.Random) -> dict[str, Any]:
    keys = rng.sample(PERSON_KEYS, rng.randint(0, len(PERSON_KEYS)))
    person = {key: property_value(rng, key) for key in keys}
    groups: dict[str, Any] = {}
    group_properties: dict[str, Any] = {}
    for name in ("company", "project"):
        if rng.random() < 0.6:
            groups[name] = rng.choice(["acme", "globex", 42])
            if rng.random() < 0.8:
                gkeys = rng.sample(PERSON_KEYS, rng.randint(0, 5))
                group_properties[name] = {k: property_value(rng, k) for k in gkeys}
    distinct_id = rng.choice([f"user-{rng.randint(0, 10**6)}", rng.randint(0, 1000)])
    device_id = rng.choice([None, None, "", f"device-{rng.randint(0, 10**6)}"])
    return {
        "distinct_id": distinct_id,
        "groups": groups,
        "person_properties": person,
        "group_properties": group_properties,
        "device_id": device_id,
    }


def cases(seed: int, count: int):
    rng = random.Random(seed)
    produced = 0
    while produced < count:
        defs = definitions(rng)
        for _ in range(10):
            inputs = call(rng)
            for raw in defs["flags"]:
                yield copy.deepcopy(defs), raw["key"], inputs
                produced += 1


# ---------------------------------------------------------------- plain person flags
#
# Flags with nothing but person-property conditions, rollouts and variants take the
# specialised evaluator (``posthog_otel.flags._fastpath``). These cases aim at it: more
# conditions and odd float rollouts and splits, and properties that are mostly passed,
# so that most filters decide.

ROLLOUTS = [None, 0, 0.001, 1, 12.5, 33.333, 45, 50, 66.67, 99.999, 100, 150]


def _split(rng: random.Random, count: int) -> list[float]:
    if rng.random() < 0.5:
        return rng.choice(
            [[100.0], [50, 50], [33.33, 33.33, 33.34], [25.5, 25.5, 49], [10, 0, 90]]
        )[:count] or [100.0]
    cuts = sorted(rng.uniform(0, 100) for _ in range(count - 1))
    return [
        round(b - a, rng.choice([0, 2, 6])) for a, b in zip([0, *cuts], [*cuts, 100], strict=True)
    ]


def plain_person_flag(rng: random.Random, key: str) -> dict[str, Any]:
    filters: dict[str, Any] = {"groups": [], "payloads": {}}
    names: list[str] = []
    if rng.random() < 0.5:
        names = ["control", "test", "third", "fourth"][: rng.randint(1, 4)]
        split = _split(rng, len(names))
        filters["multivariate"] = {
            "variants": [
                {"key": n, "rollout_percentage": p} for n, p in zip(names, split, strict=False)
            ]
        }
    for _ in range(rng.randint(1, 3)):
        condition: dict[str, Any] = {
            "properties": [property_filter(rng) for _ in range(rng.choice([0, 0, 1, 1, 2]))],
            "rollout_percentage": rng.choice([*ROLLOUTS, rng.uniform(0, 100)]),
        }
        if names and rng.random() < 0.3:
            condition["variant"] = rng.choice([*names, "nope", None])
        filters["groups"].append(condition)
    if rng.random() < 0.15:
        filters["early_exit"] = True
    return {"id": 1, "key": key, "version": 1, "active": True, "filters": filters}


def plain_person_cases(seed: int, count: int):
    """``(definitions, key, inputs)`` for plain person flags, deterministic per seed."""
    rng = random.Random(seed)
    for index in range(count):
        key = f"plain-{index % 50}"
        defs = {"flags": [plain_person_flag(rng, key)], "group_type_mapping": {}, "cohorts": {}}
        person = {k: property_value(rng, k) for k in PERSON_KEYS if rng.random() < 0.85}
        inputs = {
            "distinct_id": f"user-{rng.randint(0, 10**9)}",
            "groups": {},
            "person_properties": person,
            "group_properties": {},
        }
        yield defs, key, inputs
