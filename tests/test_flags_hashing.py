"""Bucketing against the vectors posthog==7.91.1 ships in its own test suite."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import posthog
import pytest

from posthog_otel.flags._evaluator import Definitions
from posthog_otel.flags._hashing import (
    _SCALE,
    bucket,
    digest_bound,
    holdout_bucket,
    rollout_gate,
    smallest_bucket,
    variant_picker,
    variant_ranges,
)

_TESTS = Path(posthog.__file__).parent / "test" / "test_feature_flags.py"


def shipped_case(name: str) -> tuple[dict, list]:
    """The flag definition and the 1000 expected results of a shipped consistency test."""
    tree = ast.parse(_TESTS.read_text())
    function = next(
        node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == name
    )
    flags = results = None
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            target = node.targets[0]
            if isinstance(target, ast.Attribute) and target.attr == "feature_flags":
                flags = ast.literal_eval(node.value)
            elif isinstance(target, ast.Name) and target.id == "results":
                results = ast.literal_eval(node.value)
    assert flags and results
    return flags[0], results


@pytest.mark.parametrize(
    "name", ["test_simple_flag_consistency", "test_multivariate_flag_consistency"]
)
def test_consistency_vectors(name):
    flag, expected = shipped_case(name)
    assert len(expected) == 1000
    definitions = Definitions({"flags": [flag]})
    actual = [definitions.evaluate(flag["key"], f"distinct_id_{i}") for i in range(1000)]
    assert actual == expected


def test_spot_values():
    assert round(bucket("simple-flag", "distinct_id_0"), 6) == 0.783696
    assert round(bucket("simple-flag", "distinct_id_1"), 6) == 0.339707
    assert round(bucket("multivariate-flag", "distinct_id_0", "variant"), 6) == 0.618645
    assert round(holdout_bucket("user_5"), 6) == 0.070171


def test_holdout_membership_matches_server_bucketing():
    flag = {
        "key": "experiment-flag",
        "active": True,
        "filters": {
            "groups": [{"properties": [], "rollout_percentage": 100}],
            "holdout": {"id": 727, "exclusion_percentage": 20},
        },
    }
    definitions = Definitions({"flags": [flag]})
    held_out = {
        f"user_{n}"
        for n in range(1, 21)
        if definitions.evaluate("experiment-flag", f"user_{n}") == "holdout-727"
    }
    assert held_out == {"user_5", "user_6", "user_14", "user_15"}


# ------------------------------------------------- rollouts and variants without floats

THRESHOLDS = [0.0, 1.0, 0.5, 0.45, 0.125, 1 / 3, 0.33333, 0.9999, 1e-18, 5e-324, -0.1, 1.1]


def _bucket_of(n: int) -> float:
    return n / _SCALE  # the server's float expression, on a 60-bit n


@pytest.mark.parametrize("inclusive", [False, True])
def test_smallest_bucket_is_the_exact_boundary(inclusive):
    rng = random.Random(3)
    for threshold in [*THRESHOLDS, *(rng.random() for _ in range(300))]:
        n = smallest_bucket(threshold, inclusive=inclusive)

        def passes(k: int, threshold: float = threshold) -> bool:
            return _bucket_of(k) >= threshold if inclusive else _bucket_of(k) > threshold

        assert 0 <= n <= 1 << 60
        if n < 1 << 60:
            assert passes(n), (threshold, n)
        if n > 0:
            assert not passes(n - 1), (threshold, n)


def test_digest_bound_orders_digests_like_their_top_60_bits():
    rng = random.Random(4)
    for bound_n in [0, 1, (1 << 60) - 1, 1 << 60, *(rng.getrandbits(60) for _ in range(300))]:
        bound = digest_bound(bound_n)
        for n in {
            max(bound_n - 1, 0),
            min(bound_n, (1 << 60) - 1),
            min(bound_n + 1, (1 << 60) - 1),
        }:
            first_8 = ((n << 4) | rng.getrandbits(4)).to_bytes(8, "big")
            digest = first_8 + rng.randbytes(12)
            assert (digest >= bound) == (n >= bound_n), (bound_n, n)


def test_gate_and_picker_agree_with_the_float_bucket():
    rng = random.Random(5)
    end_to_end = [("a", 0.0, 0.3333), ("b", 0.3333, 0.6666), ("c", 0.6666, 1.0)]
    with_a_negative_split = [("a", 0.0, 0.6), ("b", 0.6, 0.3), ("c", 0.3, 0.9)]
    for variants in [end_to_end, with_a_negative_split] * 100:
        key = f"flag-{rng.randint(0, 99)}"
        prefix = f"{key}.".encode()
        rollout = rng.choice([0, 0.001, 12.5, 33.333, 50, 99.999, rng.uniform(0, 100)])
        gate = rollout_gate(prefix, rollout, "in")
        pick = variant_picker(prefix, variants)
        gated_pick = variant_picker(prefix, variants, rollout)
        for _ in range(50):
            value = f"user-{rng.getrandbits(40)}"
            within = bucket(key, value) <= rollout / 100
            assert gate(value) == ("in" if within else None)
            point = bucket(key, value, "variant")
            expected = next((k for k, low, high in variants if low <= point < high), True)
            assert pick(value) == expected
            assert gated_pick(value) == (expected if within else None)


def test_variant_ranges_at_their_exact_edges():
    """Split points that are exactly a bucket (0.5 is bucket 2**59) belong to the upper
    variant, as ``low <= bucket < high`` says; checked on digests made for each edge."""
    rng = random.Random(6)
    variants = [("a", 0.0, 0.25), ("b", 0.25, 0.5), ("c", 0.5, 0.3333 + 0.5), ("d", 0.8333, 1.0)]
    ranges = variant_ranges(variants)
    edges = [
        smallest_bucket(edge, inclusive=True) for _, low, high in variants for edge in (low, high)
    ]
    for edge in edges:
        for n in {max(edge - 1, 0), min(edge, (1 << 60) - 1), min(edge + 1, (1 << 60) - 1)}:
            digest = ((n << 4) | rng.getrandbits(4)).to_bytes(8, "big") + rng.randbytes(12)
            point = _bucket_of(n)
            expected = next((k for k, low, high in variants if low <= point < high), True)
            actual = next((k for k, low, high in ranges if low <= digest < high), True)
            assert actual == expected, (n, point)


def test_gates_and_pickers_are_shared_safely_between_threads():
    """Every read copies the flag's hashed prefix; concurrent reads never mix states."""
    import threading

    variants = [("a", 0.0, 0.5), ("b", 0.5, 1.0)]
    gate = rollout_gate(b"flag.", 40, True)
    pick = variant_picker(b"flag.", variants, 70)
    values = [f"user-{i}" for i in range(2000)]
    expected = [(gate(v), pick(v)) for v in values]
    failures: list[str] = []
    start = threading.Barrier(4)

    def read() -> None:
        start.wait()
        for _ in range(5):
            for value, wanted in zip(values, expected, strict=True):
                if (gate(value), pick(value)) != wanted:
                    failures.append(value)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert {w for _, w in expected} >= {"a", "b", None}  # every outcome was exercised
