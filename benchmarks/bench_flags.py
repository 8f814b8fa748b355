"""Local flag evaluation: posthog-otel against posthog==7.91.1, in one run.

    python benchmarks/bench_flags.py [--quick]

Both clients get the same definitions (no network: posthog's are assigned directly, ours
come from a local fake server once) and answer ``get_feature_flag(key, distinct_id,
person_properties=..., only_evaluate_locally=True)`` for many distinct ids, with exposure
events off, so only evaluation is timed. Also ``get_all_flags`` over 20 flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from itertools import islice
from pathlib import Path

from posthog import Posthog

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import best_us

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


def definitions() -> dict:
    flags = [
        {"id": i, "key": f"flag-{i}", "active": True, "filters": filters}
        for i, filters in enumerate(FLAGS.values())
    ]
    for i in range(len(flags), 20):  # 20 flags for get_all_flags
        flags.append({**flags[i % 4], "id": i, "key": f"flag-{i}"})
    return {"flags": flags, "group_type_mapping": {}, "cohorts": {}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (2_000, 3) if args.quick else (20_000, 5)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)
    defs = definitions()
    ids = [f"user-{i}" for i in range(1000)]
    theirs = Posthog("phc_bench", host="http://127.0.0.1:9", sync_mode=True, send=False)
    theirs.feature_flags = defs["flags"]
    theirs.group_type_mapping = {}
    theirs.cohorts = {}
    with FakePostHog(flag_definitions=defs) as server:
        ours = Client("phc_bench", host=server.url, secret_key="phs_bench")
        ours.reload_feature_flags()

        print("## one flag, local evaluation (µs per call, 1000 rotating distinct ids)")
        for index, name in enumerate(FLAGS):
            key = f"flag-{index}"
            assert ours.get_feature_flag(
                key,
                "user-1",
                person_properties=PROPS,
                only_evaluate_locally=True,
                send_feature_flag_events=False,
            ) == theirs.get_feature_flag(
                key,
                "user-1",
                person_properties=PROPS,
                only_evaluate_locally=True,
                send_feature_flag_events=False,
            )

            def run_theirs(count: int, key: str = key) -> None:
                for i in range(count):
                    theirs.get_feature_flag(
                        key,
                        ids[i % 1000],
                        person_properties=PROPS,
                        only_evaluate_locally=True,
                        send_feature_flag_events=False,
                    )

            def run_ours(count: int, key: str = key) -> None:
                get = ours.get_feature_flag
                for i in range(count):
                    get(
                        key,
                        ids[i % 1000],
                        person_properties=PROPS,
                        only_evaluate_locally=True,
                        send_feature_flag_events=False,
                    )

            t_theirs = best_us(run_theirs, n, rounds)
            t_ours = best_us(run_ours, n, rounds)
            print(
                f"  {name:34s} posthog {t_theirs:6.2f} µs  posthog_otel {t_ours:6.2f} µs  {t_theirs / t_ours:4.1f}x"
            )

        def all_theirs(count: int) -> None:
            for i in range(count):
                theirs.get_all_flags(
                    ids[i % 1000], person_properties=PROPS, only_evaluate_locally=True
                )

        def all_ours(count: int) -> None:
            for i in range(count):
                ours.get_all_flags(
                    ids[i % 1000], person_properties=PROPS, only_evaluate_locally=True
                )

        print("## the same, each call for a new distinct id (cold: nothing memoized)")
        # Every id is used once, by one call of one library; made before timing starts.
        fresh = iter([f"cold-{i}" for i in range(n * rounds * 2 * len(FLAGS))])
        for index, name in enumerate(FLAGS):
            key = f"flag-{index}"

            def cold_theirs(count: int, key: str = key) -> None:
                for distinct_id in islice(fresh, count):
                    theirs.get_feature_flag(
                        key,
                        distinct_id,
                        person_properties=PROPS,
                        only_evaluate_locally=True,
                        send_feature_flag_events=False,
                    )

            def cold_ours(count: int, key: str = key) -> None:
                get = ours.get_feature_flag
                for distinct_id in islice(fresh, count):
                    get(
                        key,
                        distinct_id,
                        person_properties=PROPS,
                        only_evaluate_locally=True,
                        send_feature_flag_events=False,
                    )

            t_theirs = best_us(cold_theirs, n, rounds)
            t_ours = best_us(cold_ours, n, rounds)
            print(
                f"  {name:34s} posthog {t_theirs:6.2f} µs  posthog_otel {t_ours:6.2f} µs  {t_theirs / t_ours:4.1f}x"
            )

        t_theirs = best_us(all_theirs, n // 10, rounds)
        t_ours = best_us(all_ours, n // 10, rounds)
        print(
            f"## get_all_flags over 20 flags: posthog {t_theirs:7.1f} µs  posthog_otel {t_ours:7.1f} µs  {t_theirs / t_ours:4.1f}x"
        )
        ours.close(5)


if __name__ == "__main__":
    main()
