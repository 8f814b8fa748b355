"""Local flag evaluation: posthog-otel against posthog==7.91.1, in one run.

    python benchmarks/bench_flags.py [--quick]

Both clients get the same definitions (no network: posthog's are assigned directly, ours
come from a local fake server once) and answer ``get_feature_flag(key, distinct_id,
person_properties=..., only_evaluate_locally=True)`` for many distinct ids, with exposure
events off, so only evaluation is timed; then the same through
``get_feature_flag_result`` (posthog's non-deprecated call), and ``get_all_flags`` over
20 flags. The regex and relative-date flags are also measured at a 99 % rollout (at
100 % we skip the rollout hash, posthog does not). The two libraries' rounds alternate
(A B, B A, ...).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from posthog import Posthog

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import alternated_us

from posthog_otel import Client
from posthog_otel.testing import FakePostHog

PROPS = {"plan": "pro", "age": 30, "email": "ada@example.com", "signup": "2026-11-20T00:00:00Z"}
FLAGS = {
    "rollout flag": {"groups": [{"properties": [], "rollout_percentage": 45}]},
    "multivariate, person properties": {
        "groups": [
            {
                "properties": [
                    {"key": "plan", "value": ["pro", "enterprise"], "type": "person"},
                    {"key": "age", "value": 18, "operator": "gte", "type": "person"},
                ],
                "rollout_percentage": 80,
            }
        ],
        "multivariate": {
            "variants": [
                {"key": "control", "rollout_percentage": 50},
                {"key": "test", "rollout_percentage": 50},
            ]
        },
    },
    "regex flag": {
        "groups": [
            {
                "properties": [
                    {
                        "key": "email",
                        "value": "@example\\.com$",
                        "operator": "regex",
                        "type": "person",
                    }
                ],
                "rollout_percentage": 100,
            }
        ]
    },
    "relative-date flag": {
        "groups": [
            {
                "properties": [
                    {
                        "key": "signup",
                        "value": "-30d",
                        "operator": "is_date_after",
                        "type": "person",
                    }
                ],
                "rollout_percentage": 100,
            }
        ]
    },
}
FLAGS["regex flag, 99 % rollout"] = {
    "groups": [{**FLAGS["regex flag"]["groups"][0], "rollout_percentage": 99}]
}
FLAGS["relative-date flag, 99 % rollout"] = {
    "groups": [{**FLAGS["relative-date flag"]["groups"][0], "rollout_percentage": 99}]
}
# get_all_flags evaluates these 20: the first four flags above, five times over.
ALL_FLAGS = [FLAGS[name] for name in list(FLAGS)[:4]] * 5


def definitions(filters: list[dict]) -> dict:
    flags = [
        {"id": i, "key": f"flag-{i}", "active": True, "filters": f} for i, f in enumerate(filters)
    ]
    return {"flags": flags, "group_type_mapping": {}, "cohorts": {}}


def _official(defs: dict) -> Posthog:
    client = Posthog("phc_bench", host="http://127.0.0.1:9", sync_mode=True, send=False)
    client.feature_flags = defs["flags"]
    client.group_type_mapping = {}
    client.cohorts = {}
    return client


def _row(name: str, results: dict[str, list[float]]) -> float:
    theirs, ours = min(results["posthog"]), min(results["posthog_otel"])
    print(
        f"  {name:40s} posthog {theirs:6.2f} µs  posthog_otel {ours:6.2f} µs  {theirs / ours:4.1f}x"
    )
    return theirs / ours


def _single(
    theirs: Posthog, ours: Client, method: str, ids: Iterable[str] | None, n: int, rounds: int
) -> None:
    """One row per flag: ``method`` of both clients, over 1,000 rotating ids (``ids``
    None) or over fresh ones taken from the ``ids`` iterator."""
    rotating = [f"user-{i}" for i in range(1000)]
    for index, name in enumerate(FLAGS):
        key = f"flag-{index}"
        mine, official = getattr(ours, method), getattr(theirs, method)
        options = {
            "person_properties": PROPS,
            "only_evaluate_locally": True,
            "send_feature_flag_events": False,
        }
        a, b = mine(key, "user-1", **options), official(key, "user-1", **options)
        if method == "get_feature_flag_result":
            a, b = a.get_value(), b.get_value()
        assert a == b, (name, a, b)

        def run(get: Callable[..., object], key: str = key) -> Callable[[int], None]:
            def loop(count: int) -> None:
                if ids is None:
                    for i in range(count):
                        get(
                            key,
                            rotating[i % 1000],
                            person_properties=PROPS,
                            only_evaluate_locally=True,
                            send_feature_flag_events=False,
                        )
                else:
                    for distinct_id in islice(ids, count):
                        get(
                            key,
                            distinct_id,
                            person_properties=PROPS,
                            only_evaluate_locally=True,
                            send_feature_flag_events=False,
                        )

            return loop

        _row(name, alternated_us({"posthog": run(official), "posthog_otel": run(mine)}, n, rounds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (2_000, 3) if args.quick else (20_000, 5)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)
    defs = definitions(list(FLAGS.values()))
    all_defs = definitions(ALL_FLAGS)
    theirs, theirs_all = _official(defs), _official(all_defs)
    with (
        FakePostHog(flag_definitions=defs) as server,
        FakePostHog(flag_definitions=all_defs) as server_all,
    ):
        ours = Client("phc_bench", host=server.url, secret_key="phs_bench")
        ours.reload_feature_flags()
        ours_all = Client("phc_bench", host=server_all.url, secret_key="phs_bench")
        ours_all.reload_feature_flags()

        print("## get_feature_flag, local evaluation (µs per call, 1000 rotating distinct ids)")
        _single(theirs, ours, "get_feature_flag", None, n, rounds)
        print("## get_feature_flag_result, the same")
        _single(theirs, ours, "get_feature_flag_result", None, n, rounds)
        print("## get_feature_flag, each call for a new distinct id (cold: nothing memoized)")
        # Every id is used once, by one call of one library; made before timing starts.
        fresh = iter([f"cold-{i}" for i in range(n * rounds * 2 * len(FLAGS))])
        _single(theirs, ours, "get_feature_flag", fresh, n, rounds)

        def all_flags(client: Any) -> Callable[[int], None]:
            def loop(count: int) -> None:
                get_all = client.get_all_flags
                for i in range(count):
                    get_all(f"user-{i % 1000}", person_properties=PROPS, only_evaluate_locally=True)

            return loop

        print("## get_all_flags over 20 flags (µs per call)")
        _row(
            "get_all_flags",
            alternated_us(
                {"posthog": all_flags(theirs_all), "posthog_otel": all_flags(ours_all)},
                n // 10,
                rounds,
            ),
        )
        ours.close(5)
        ours_all.close(5)


if __name__ == "__main__":
    main()
