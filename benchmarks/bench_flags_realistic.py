"""Local flag evaluation on a realistic flag set: posthog-otel against posthog==7.91.1,
side by side in one run.

    python benchmarks/bench_flags_realistic.py [--quick]

The set looks like a real project's: 150 flags with one to three condition groups,
every property operator with the values people use, cohorts (nested, negated), flag
dependencies, multivariate splits, payloads, rollouts at non-round percentages such as
37.5 %, a few group flags; and people who lack some properties, so that some reads are
inconclusive (only the server could answer them). Each read is
``get_feature_flag_result(key, distinct_id, person_properties=..., groups=...,
group_properties=..., only_evaluate_locally=True, send_feature_flag_events=False)``,
timed over every (flag, person) pair, the two libraries' rounds alternating.

Reported: the first read after the definitions load (``reload_feature_flags()`` for us,
the assignment of the definitions for posthog), the mean read over all pairs, over the
conclusive and over the inconclusive ones, the overall mean including the first read,
and ``get_all_flags`` over the whole set. Both libraries' answers are checked to agree
first (where posthog answers an inconclusive read, it is counted, not compared).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import random
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from posthog import Posthog

sys.path.insert(0, str(Path(__file__).resolve().parent))

from posthog_otel import Client
from posthog_otel.testing import FakePostHog

FLAGS = 150
PEOPLE = 200
NOW = datetime.now(timezone.utc)

# Person properties, and a realistic filter of each operator on them.
FILTERS: list[tuple[str, str, Any]] = [
    ("plan", "exact", ["pro", "enterprise"]),
    ("plan", "exact", "pro"),
    ("plan", "is_not", "free"),
    ("country", "exact", ["US", "CA", "GB"]),
    ("country", "is_not", ["FR"]),
    ("email", "is_set", "is_set"),
    ("email", "is_not_set", "is_not_set"),
    ("email", "icontains", "example"),
    ("email", "not_icontains", "test"),
    ("email", "regex", r"@(example|acme)\.com$"),
    ("email", "not_regex", r"^admin@"),
    ("email", "starts_with", "ada"),
    ("email", "not_starts_with", "bot"),
    ("email", "ends_with", ".com"),
    ("email", "not_ends_with", ".org"),
    ("age", "gt", 18),
    ("age", "gte", 21),
    ("age", "lt", 65),
    ("age", "lte", "40"),
    ("score", "gt", 0.5),
    ("signup", "is_date_after", "-30d"),
    ("signup", "is_date_before", "2026-06-01"),
    ("signup", "is_date_after", "-6m"),
    ("app_version", "semver_gte", "2.1.0"),
    ("app_version", "semver_lt", "3.0.0"),
    ("app_version", "semver_eq", "2.4.1"),
    ("app_version", "semver_neq", "1.0.0"),
    ("app_version", "semver_gt", "2.0.0"),
    ("app_version", "semver_lte", "2.9.9"),
    ("app_version", "semver_tilde", "2.4.0"),
    ("app_version", "semver_caret", "2.0.0"),
    ("app_version", "semver_wildcard", "2.*"),
    ("beta", "exact", ["true"]),
]
ROLLOUTS = [100, 100, 100, 50, 37.5, 12.5, 99, 20, 75, 0, None, 62.5, 5]
SPLITS = [[50, 50], [33.3, 33.3, 33.4], [25, 25, 50], [90, 10], [20, 20, 20, 20, 20]]


def prop(rng: random.Random) -> dict[str, Any]:
    key, operator, value = rng.choice(FILTERS)
    return {"key": key, "operator": operator, "value": value, "type": "person"}


def cohorts(rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cohort_id in range(1, 6):
        values: list[Any] = [prop(rng) for _ in range(rng.randint(1, 3))]
        if cohort_id > 2 and rng.random() < 0.5:  # nested, sometimes negated
            values.append(
                {
                    "key": "id",
                    "type": "cohort",
                    "value": rng.randint(1, cohort_id - 1),
                    "negation": rng.random() < 0.3,
                }
            )
        out[str(cohort_id)] = {
            "type": "OR",
            "values": [{"type": rng.choice(["AND", "OR"]), "values": values}],
        }
    return out


def flag(rng: random.Random, index: int, earlier: list[dict[str, Any]]) -> dict[str, Any]:
    key = f"flag-{index}"
    group_flag = rng.random() < 0.05
    groups = []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        properties: list[dict[str, Any]] = []
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
            roll = rng.random()
            if group_flag:
                p = prop(rng)
                properties.append({**p, "type": "group", "group_type_index": 0})
            elif roll < 0.1:
                properties.append(
                    {"key": "id", "type": "cohort", "value": rng.randint(1, 5), "operator": "in"}
                )
            elif roll < 0.18 and earlier:
                parent = rng.choice(earlier)
                values: list[Any] = [True, False]
                if parent["filters"].get("multivariate"):
                    values = [True, parent["filters"]["multivariate"]["variants"][0]["key"]]
                properties.append(
                    {
                        "key": parent["key"],
                        "type": "flag",
                        "operator": "flag_evaluates_to",
                        "value": rng.choice(values),
                        "dependency_chain": [parent["key"]],
                    }
                )
            else:
                properties.append(prop(rng))
        groups.append({"properties": properties, "rollout_percentage": rng.choice(ROLLOUTS)})
    filters: dict[str, Any] = {"groups": groups, "payloads": {}}
    if rng.random() < 0.3:
        split = rng.choice(SPLITS)
        names = [f"variant-{i}" for i in range(len(split))]
        filters["multivariate"] = {
            "variants": [
                {"key": n, "rollout_percentage": p} for n, p in zip(names, split, strict=True)
            ]
        }
        if rng.random() < 0.6:
            filters["payloads"] = {n: json.dumps({"copy": n, "n": i}) for i, n in enumerate(names)}
    elif rng.random() < 0.5:
        filters["payloads"] = {"true": json.dumps({"color": rng.choice(["blue", "green"])})}
    if group_flag:
        filters["aggregation_group_type_index"] = 0
    return {
        "id": index + 1,
        "key": key,
        "version": rng.randint(1, 9),
        "active": rng.random() > 0.05,
        "filters": filters,
    }


def definitions(seed: int = 13) -> dict[str, Any]:
    rng = random.Random(seed)
    flags: list[dict[str, Any]] = []
    for index in range(FLAGS):
        flags.append(flag(rng, index, flags[-40:]))
    return {"flags": flags, "group_type_mapping": {"0": "company"}, "cohorts": cohorts(rng)}


def people(seed: int = 14) -> list[dict[str, Any]]:
    """Each person lacks some properties (15 % each): some reads are inconclusive."""
    rng = random.Random(seed)
    out = []
    for i in range(PEOPLE):
        full = {
            "plan": rng.choice(["free", "pro", "enterprise"]),
            "country": rng.choice(["US", "CA", "GB", "FR", "DE"]),
            "email": rng.choice([f"ada{i}@example.com", f"user{i}@acme.com", f"bot{i}@x.org"]),
            "age": rng.randint(14, 80),
            "score": round(rng.random(), 3),
            "signup": (NOW - timedelta(days=rng.randint(0, 400))).isoformat(),
            "app_version": rng.choice(["1.0.0", "2.0.1", "2.4.1", "2.9.0", "3.1.0"]),
            "beta": rng.choice(["true", "false"]),
        }
        person = {k: v for k, v in full.items() if rng.random() > 0.15}
        company = {"plan": rng.choice(["pro", "free"]), "email": f"billing@co{i % 7}.com"}
        out.append(
            {
                "distinct_id": f"user-{i}",
                "person_properties": person,
                "groups": {"company": f"co-{i % 7}"},
                "group_properties": {"company": company},
            }
        )
    return out


# The simple benchmark's regex and relative-date rows (bench_flags.py), at 100 % and at
# a 99 % rollout (which takes a hash as well).
SIMPLE_PROPS = {"email": "ada@example.com", "signup": NOW.isoformat()}
SIMPLE = {
    "regex": {"key": "email", "value": "@example\\.com$", "operator": "regex"},
    "relative date": {"key": "signup", "value": "-30d", "operator": "is_date_after"},
}


def simple_definitions() -> dict[str, Any]:
    flags = []
    for name, filter_ in SIMPLE.items():
        for rollout in (100, 99):
            condition = {
                "properties": [{**filter_, "type": "person"}],
                "rollout_percentage": rollout,
            }
            flags.append(
                {
                    "id": len(flags) + 1,
                    "key": f"{name} {rollout}",
                    "active": True,
                    "filters": {"groups": [condition]},
                }
            )
    return {"flags": flags, "group_type_mapping": {}, "cohorts": {}}


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 2 if args.quick else 4
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)
    defs = definitions()
    crowd = people()
    pairs = [(f["key"], p) for p in crowd for f in defs["flags"]]

    theirs = Posthog("phc_bench", host="http://127.0.0.1:9", sync_mode=True, send=False)
    with FakePostHog(flag_definitions=defs) as server:
        ours = Client("phc_bench", host=server.url, secret_key="phs_bench")

        def read_theirs(key: str, p: dict[str, Any]) -> Any:
            return theirs.get_feature_flag_result(
                key,
                p["distinct_id"],
                groups=p["groups"],
                person_properties=p["person_properties"],
                group_properties=p["group_properties"],
                only_evaluate_locally=True,
                send_feature_flag_events=False,
            )

        read = ours.get_feature_flag_result

        def read_ours(key: str, p: dict[str, Any]) -> Any:
            return read(
                key,
                p["distinct_id"],
                groups=p["groups"],
                person_properties=p["person_properties"],
                group_properties=p["group_properties"],
                only_evaluate_locally=True,
                send_feature_flag_events=False,
            )

        # The first read after the definitions load.
        first_key, first_person = pairs[0]
        ours.reload_feature_flags()
        first_ours = timed(lambda: read_ours(first_key, first_person))

        def load_theirs() -> None:
            theirs.feature_flags = defs["flags"]
            theirs.group_type_mapping = defs["group_type_mapping"]
            theirs.cohorts = defs["cohorts"]

        load_theirs()
        first_theirs = timed(lambda: read_theirs(first_key, first_person))

        # Agreement, and which pairs are inconclusive.
        inconclusive, conclusive, disagree, they_guess = [], [], 0, 0
        for key, p in pairs:
            a, b = read_ours(key, p), read_theirs(key, p)
            if a is None:
                inconclusive.append((key, p))
                they_guess += b is not None
            else:
                conclusive.append((key, p))
                disagree += b is None or (a.get_value(), a.payload) != (b.get_value(), b.payload)
        print(
            f"{len(defs['flags'])} flags x {len(crowd)} people = {len(pairs)} reads; "
            f"{len(inconclusive)} inconclusive ({100 * len(inconclusive) / len(pairs):.0f} %), "
            f"disagreements {disagree}, inconclusive reads posthog answers anyway {they_guess}"
        )

        def each(reader: Callable[[str, dict[str, Any]], Any], subset: list) -> Callable[[], None]:
            def run() -> None:
                for key, p in subset:
                    reader(key, p)

            return run

        def all_flags(client: Any) -> Callable[[], None]:
            def run() -> None:
                for p in crowd:
                    client.get_all_flags(
                        p["distinct_id"],
                        groups=p["groups"],
                        person_properties=p["person_properties"],
                        group_properties=p["group_properties"],
                        only_evaluate_locally=True,
                    )

            return run

        rows = [
            ("every (flag, person) pair", pairs, each(read_theirs, pairs), each(read_ours, pairs)),
            (
                "conclusive reads",
                conclusive,
                each(read_theirs, conclusive),
                each(read_ours, conclusive),
            ),
            (
                "inconclusive reads",
                inconclusive,
                each(read_theirs, inconclusive),
                each(read_ours, inconclusive),
            ),
            (f"get_all_flags ({FLAGS} flags)", crowd, all_flags(theirs), all_flags(ours)),
        ]
        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):  # the two libraries' rounds alternate
            for name, subset, run_theirs, run_ours in rows:
                gc.collect()
                t_theirs = timed(run_theirs) / len(subset) * 1e6
                gc.collect()
                t_ours = timed(run_ours) / len(subset) * 1e6
                old = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(old[0], t_theirs), min(old[1], t_ours))

        print(
            f"first read after load: posthog {first_theirs * 1e6:8.1f} µs  "
            f"posthog_otel {first_ours * 1e6:8.1f} µs"
        )
        for name, (t_theirs, t_ours) in best.items():
            print(
                f"  {name:30s} posthog {t_theirs:8.2f} µs  posthog_otel {t_ours:7.2f} µs  "
                f"{t_theirs / t_ours:5.1f}x"
            )
        t_theirs, t_ours = best["every (flag, person) pair"]
        overall_theirs = (first_theirs * 1e6 + t_theirs * (len(pairs) - 1)) / len(pairs)
        overall_ours = (first_ours * 1e6 + t_ours * (len(pairs) - 1)) / len(pairs)
        print(
            f"  {'overall, with the first read':30s} posthog {overall_theirs:8.2f} µs  "
            f"posthog_otel {overall_ours:7.2f} µs  {overall_theirs / overall_ours:5.1f}x"
        )

        # The async read of a local answer: the sync read plus the await, no thread hop.
        aread = ours.aget_feature_flag_result

        async def async_rounds() -> tuple[float, float]:
            best_sync = best_async = float("inf")
            for _ in range(rounds):
                gc.collect()
                best_sync = min(best_sync, timed(each(read_ours, conclusive)))
                gc.collect()
                started = time.perf_counter()
                for key, p in conclusive:
                    await aread(
                        key,
                        p["distinct_id"],
                        groups=p["groups"],
                        person_properties=p["person_properties"],
                        group_properties=p["group_properties"],
                        only_evaluate_locally=True,
                        send_feature_flag_events=False,
                    )
                best_async = min(best_async, time.perf_counter() - started)
            return best_sync / len(conclusive) * 1e6, best_async / len(conclusive) * 1e6

        t_sync, t_async = asyncio.run(async_rounds())
        print(
            f"  {'async local read (conclusive)':30s} sync {t_sync:8.2f} µs  "
            f"await {t_async:7.2f} µs  +{t_async - t_sync:.2f} µs"
        )
        ours.close(1)

    simple = simple_definitions()
    theirs.feature_flags = simple["flags"]
    theirs.group_type_mapping = {}
    theirs.cohorts = {}
    ids = [f"user-{i}" for i in range(1000)]
    with FakePostHog(flag_definitions=simple) as server:
        ours = Client("phc_bench", host=server.url, secret_key="phs_bench")
        ours.reload_feature_flags()
        print("simple flags, 1000 rotating ids (bench_flags.py's rows):")
        for raw in simple["flags"]:
            key = raw["key"]

            def simple_reader(client: Any, key: str = key) -> Callable[[], None]:
                def run() -> None:
                    get = client.get_feature_flag
                    for distinct_id in ids * 5:
                        get(
                            key,
                            distinct_id,
                            person_properties=SIMPLE_PROPS,
                            only_evaluate_locally=True,
                            send_feature_flag_events=False,
                        )

                return run

            assert ours.get_feature_flag(
                key, "u1", person_properties=SIMPLE_PROPS, only_evaluate_locally=True
            ) == theirs.get_feature_flag(
                key, "u1", person_properties=SIMPLE_PROPS, only_evaluate_locally=True
            )
            t_theirs = t_ours = float("inf")
            for _ in range(rounds):
                gc.collect()
                t_theirs = min(t_theirs, timed(simple_reader(theirs)) / 5000 * 1e6)
                gc.collect()
                t_ours = min(t_ours, timed(simple_reader(ours)) / 5000 * 1e6)
            print(
                f"  {key + ' %':30s} posthog {t_theirs:8.2f} µs  posthog_otel {t_ours:7.2f} µs  "
                f"{t_theirs / t_ours:5.1f}x"
            )
        ours.close(1)
    theirs.shutdown()


if __name__ == "__main__":
    main()
