"""Bucketing against the vectors posthog==7.91.1 ships in its own test suite."""

from __future__ import annotations

import ast
from pathlib import Path

import posthog
import pytest

from posthog_otel.flags._evaluator import Definitions
from posthog_otel.flags._hashing import bucket, holdout_bucket

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
