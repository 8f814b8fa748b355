"""Local evaluation agrees with posthog==7.91.1's on generated cases.

posthog's ``Posthog._compute_flag_locally`` is the reference: a value, or an exception
meaning "cannot decide locally". Ours: a value, or ``Unresolved``. Where SPEC §2.4 has us
answer "inconclusive" on purpose (a group flag without its group, super conditions, a
regex match over its time budget), the case is checked separately instead.
"""

from __future__ import annotations

import logging

import pytest
from posthog import Posthog

from posthog_otel.flags import _regex
from posthog_otel.flags._errors import UNDECIDED, Unresolved
from posthog_otel.flags._evaluator import Definitions

from .flag_cases import cases, plain_person_cases

INCONCLUSIVE = "<inconclusive>"
CASES = 12_000
PLAIN_CASES = 6_000


@pytest.fixture(scope="module")
def reference():
    logging.getLogger("posthog").setLevel(logging.CRITICAL)
    client = Posthog("phc_reference", host="http://127.0.0.1:9", sync_mode=True, send=False)
    yield client
    client.shutdown()


def theirs(client, defs, key, inputs):
    client.feature_flags = defs["flags"]
    client.group_type_mapping = defs["group_type_mapping"]
    client.cohorts = defs["cohorts"]
    client._property_matching_version = defs.get("property_matching_version", 1)
    try:
        return client._compute_flag_locally(
            client.feature_flags_by_key[key],
            inputs["distinct_id"],
            groups=inputs["groups"],
            person_properties=inputs["person_properties"],
            group_properties=inputs["group_properties"],
            device_id=inputs.get("device_id"),
        )
    except Exception:
        return INCONCLUSIVE


def call_args(inputs):
    return (
        inputs["distinct_id"],
        inputs["groups"],
        inputs["person_properties"],
        inputs["group_properties"],
    )


def ours(defs, key, inputs):
    try:
        return Definitions(defs).evaluate(key, **inputs)
    except Unresolved:
        return INCONCLUSIVE


def deliberately_inconclusive(defs, key, inputs) -> bool:
    flag = next(f for f in defs["flags"] if f["key"] == key)
    filters = flag.get("filters") or {}
    index = filters.get("aggregation_group_type_index")
    if not flag.get("active") or flag.get("ensure_experience_continuity"):
        return False
    if filters.get("super_groups"):
        return True
    if index is None:
        return False
    name = defs["group_type_mapping"].get(str(index))
    return bool(name) and name not in inputs["groups"]


def test_local_evaluation_agrees_with_posthog(reference):
    disagreements = []
    compared = decided = deliberate = by_device = 0
    for defs, key, inputs in cases(seed=20261126, count=CASES):
        expected = theirs(reference, defs, key, inputs)
        timeouts = _regex.timeouts()
        actual = ours(defs, key, inputs)
        if actual == INCONCLUSIVE and _regex.timeouts() != timeouts:
            continue  # a regex over its budget (a loaded machine): the server decides
        if deliberately_inconclusive(defs, key, inputs):
            # posthog answers without being able to know; we ask the server instead.
            assert actual == INCONCLUSIVE, (key, defs, inputs)
            deliberate += expected != INCONCLUSIVE
            continue
        compared += 1
        decided += expected != INCONCLUSIVE
        by_device += expected != INCONCLUSIVE and _bucketed_by_device(defs, key)
        if expected != actual or type(expected) is not type(actual):
            disagreements.append((expected, actual, key, defs, inputs))
    assert compared >= 10_000 and deliberate >= 100
    assert by_device >= 100, by_device  # flags bucketed by device id, decided with one
    assert decided >= compared // 4, "too few decidable cases to mean anything"
    assert not disagreements, f"{len(disagreements)} disagreements, first: {disagreements[0]}"


def _bucketed_by_device(defs, key) -> bool:
    flag = next(f for f in defs["flags"] if f["key"] == key)
    identifier = flag.get("bucketing_identifier") or flag["filters"].get("bucketing_identifier")
    return identifier == "device_id" and flag["filters"].get("aggregation_group_type_index") is None


def test_plain_person_flags_agree_with_posthog(reference):
    """The specialised evaluator of plain person flags (``_fastpath``) on flags made for
    it: odd float rollouts and variant splits, several conditions, early exit. Where it
    answers, it must answer as posthog does; where it cannot, the general path must."""
    disagreements = []
    fast_answers = 0
    for defs, key, inputs in plain_person_cases(seed=11, count=PLAIN_CASES):
        expected = theirs(reference, defs, key, inputs)
        flag = Definitions(defs).flags[key]
        assert flag.fast is not None, defs
        try:
            fast = flag.fast(inputs["distinct_id"], inputs["person_properties"])
        except Exception:
            pass  # it could not handle it: the general path answers instead
        else:
            fast = INCONCLUSIVE if fast is None else fast  # None: a missing property
            fast_answers += 1
            if fast != expected or type(fast) is not type(expected):
                disagreements.append(("fast", expected, fast, defs, inputs))
        timeouts = _regex.timeouts()
        actual = ours(defs, key, inputs)
        over_budget = _regex.timeouts() != timeouts  # the server decides: not compared
        if not over_budget and (actual != expected or type(actual) is not type(expected)):
            disagreements.append(("evaluate", expected, actual, defs, inputs))
        # The same flag without the shortcut: the same value and the same trace (the
        # OpenFeature reasons come from the trace).
        shortcut, general = Definitions(defs), Definitions(defs)
        general.flags[key].fast = None
        traces: tuple[list, list] = ([], [])
        for definitions, trace in zip((shortcut, general), traces, strict=True):
            try:
                trace.append(
                    definitions.evaluate_flag(
                        definitions.flags[key], *call_args(inputs), trace=trace
                    )
                )
            except Unresolved:
                trace.append(INCONCLUSIVE)
        if traces[0] != traces[1]:
            disagreements.append(("trace", traces[1], traces[0], defs, inputs))
    assert not disagreements, f"{len(disagreements)} disagreements, first: {disagreements[0]}"
    assert fast_answers >= PLAIN_CASES // 3, fast_answers


def test_property_operators_agree_with_posthog():
    """Operator by operator, far more densely than whole flags can."""
    import random

    from posthog.feature_flags import match_property

    from posthog_otel.flags._operators import compile_property

    from .flag_cases import PERSON_KEYS, property_filter, property_value

    rng = random.Random(7)
    disagreements = []
    decided = 0
    for _ in range(40_000):
        prop = property_filter(rng)
        version = rng.choice([1, 2])
        keys = rng.sample(PERSON_KEYS, rng.randint(0, len(PERSON_KEYS)))
        values = {key: property_value(rng, key) for key in keys}
        try:
            expected = match_property(prop, values, version)
        except Exception:
            expected = INCONCLUSIVE
        try:
            actual = compile_property(prop, version)(values)
        except Unresolved:
            actual = INCONCLUSIVE
        if actual is UNDECIDED:  # a missing property, told without an exception
            actual = INCONCLUSIVE
        decided += expected != INCONCLUSIVE
        if expected != actual:
            disagreements.append((prop, version, values, expected, actual))
    assert not disagreements, f"{len(disagreements)} disagreements, first: {disagreements[0]}"
    assert decided >= 10_000
