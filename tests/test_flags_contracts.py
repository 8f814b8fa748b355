"""Issue #13: the flag contracts left open (PFF overrides, GFP ``match_value``, the FFC
result cache, ``$feature_flag_evaluated_at`` and the reason posthog sends)."""

from __future__ import annotations

import json
import logging

import pytest

from posthog_otel import context
from posthog_otel.testing import FakeClock, FakePostHog

SECRET = "phs_test_secret"

CHECKOUT = {
    "id": 7,
    "key": "checkout",
    "version": 2,
    "active": True,
    "filters": {
        "groups": [
            {
                "properties": [{"key": "plan", "value": "pro", "type": "person"}],
                "rollout_percentage": 100,
            }
        ],
        "multivariate": {
            "variants": [
                {"key": "blue", "rollout_percentage": 50},
                {"key": "red", "rollout_percentage": 50},
            ]
        },
        "payloads": {
            "blue": json.dumps({"cta": "Try now"}),
            "red": "{not json",
            "false": json.dumps("off"),
        },
    },
}
DEFINITIONS = {"flags": [CHECKOUT], "group_type_mapping": {}, "cohorts": {}}


def remote(key: str, value: object = True, payload: str | None = None) -> dict:
    return {
        "key": key,
        "enabled": value is not False,
        "variant": value if isinstance(value, str) else None,
        "reason": {
            "code": "condition_match",
            "condition_index": 0,
            "description": "Matched condition set 1",
        },
        "metadata": {"id": 4, "version": 9, "payload": payload},
    }


def flag_requests(server: FakePostHog) -> list:
    return [r for r in server.requests if r.path == "/flags"]


def called(server: FakePostHog) -> list[dict]:
    return [e["properties"] for e in server.events if e["event"] == "$feature_flag_called"]


# ---------------------------------------------------------------- item 1: overrides (PFF)


def test_a_disabled_client_stores_no_overrides(make_client):
    client = make_client(disabled=True)
    client.set_person_properties_for_flags({"plan": "pro"})
    client.set_group_properties_for_flags({"company": {"plan": "pro"}})
    assert client.flags.overrides.in_force(None) == ({}, {})


def test_group_overrides_by_type_and_reset_of_one_type(server, make_client):
    """PFF-03's ``(group_type, properties)`` form, PFF-05's ``group_type`` argument and
    PFF-04's ``reload_feature_flags`` on the resets, seen in the ``/flags`` requests."""
    server.set_flags({"flags": {"f": remote("f")}})
    client = make_client()
    groups = {"company": "c1", "team": "t1"}

    def sent_group_properties() -> dict:
        client.get_feature_flag("f", "u1", groups=groups, send_feature_flag_events=False)
        return flag_requests(server)[-1].json["group_properties"]

    client.set_group_properties_for_flags("company", {"plan": "pro"})
    client.set_group_properties_for_flags({"team": {"size": 3}}, reload_feature_flags=False)
    assert sent_group_properties() == {
        "company": {"$group_key": "c1", "plan": "pro"},
        "team": {"$group_key": "t1", "size": 3},
    }
    client.reset_group_properties_for_flags("nothing-of-that-type")  # a no-op
    client.reset_group_properties_for_flags("company", reload_feature_flags=False)
    assert sent_group_properties() == {
        "company": {"$group_key": "c1"},
        "team": {"$group_key": "t1", "size": 3},
    }
    client.set_person_properties_for_flags({"plan": "pro"}, reload_feature_flags=False)
    client.reset_person_properties_for_flags(reload_feature_flags=False)
    client.reset_group_properties_for_flags()
    assert sent_group_properties() == {
        "company": {"$group_key": "c1"},
        "team": {"$group_key": "t1"},
    }
    assert flag_requests(server)[-1].json["person_properties"] == {}


def test_invalid_group_override_input_is_ignored_with_a_warning(server, make_client, caplog):
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    client = make_client()
    client.set_group_properties_for_flags("company", {"plan": "pro"})
    for bad in (None, "plan=pro", ["plan"], 5):
        client.set_group_properties_for_flags("company", bad)  # type: ignore[arg-type]
    client.reset_group_properties_for_flags(5)  # type: ignore[arg-type]
    assert client.stats.corrected["invalid_flag_properties"] == 5
    assert any("properties_for_flags" in r.getMessage() for r in caplog.records)
    assert client.flags.overrides.in_force(None)[1] == {"company": {"plan": "pro"}}


# ---------------------------------------------------------------- item 2: match_value (GFP)


@pytest.fixture
def local(make_client):
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        yield server, make_client(host=server.url, secret_key=SECRET)


def test_match_value_reads_the_payload_without_evaluating(local):
    server, client = local
    # Nothing tells whether "u1" has plan=pro: an evaluation would need /flags.
    assert client.get_feature_flag_payload("checkout", "u1", match_value="blue") == {
        "cta": "Try now"
    }
    assert client.get_feature_flag_payload("checkout", "u1", match_value=False) == "off"
    assert client.get_feature_flag_payload("checkout", "u1", match_value="green") is None
    assert client.get_feature_flag_payload("checkout", match_value="blue") == {"cta": "Try now"}
    client.flush(5)
    assert flag_requests(server) == [] and called(server) == []


def test_a_payload_that_is_not_json_is_none_with_a_warning(make_client, caplog):
    caplog.set_level(logging.WARNING, logger="posthog_otel")  # before the load warns
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        assert client.get_feature_flag_payload("checkout", "u1", match_value="red") is None
    assert any(
        "checkout" in r.getMessage() and "not valid JSON" in r.getMessage() for r in caplog.records
    )


def test_match_value_without_definitions_evaluates_remotely(server, make_client):
    server.set_flags({"flags": {"checkout": remote("checkout", "blue", '{"cta": "go"}')}})
    client = make_client()
    assert client.get_feature_flag_payload("checkout", "u1", match_value="blue") == {"cta": "go"}
    assert client.get_feature_flag_payload("checkout", "u1", match_value="red") is None
    assert len(flag_requests(server)) == 2


# ---------------------------------------------------------------- item 3: result cache (FFC)


def test_evaluate_flags_and_get_all_flags_read_and_fill_the_cache(server, make_client):
    server.set_flags({"flags": {"a": remote("a"), "b": remote("b", "v", '{"p": 1}')}})
    client = make_client(flag_result_cache_ttl=60, _clock=FakeClock())
    assert client.get_all_flags("u1") == {"a": True, "b": "v"}
    assert len(flag_requests(server)) == 1
    assert client.evaluate_flags("u1").results.keys() == {"a", "b"}
    assert client.get_all_flags_and_payloads("u1")["featureFlagPayloads"] == {"b": {"p": 1}}
    assert client.evaluate_flags("u1", flag_keys=["b"]).get_flag("b") == "v"
    assert client.get_feature_flag("a", "u1") is True  # a single read from the same answer
    assert len(flag_requests(server)) == 1  # all of them from memory
    client.get_all_flags("u2")
    assert len(flag_requests(server)) == 2  # another person: a request


def test_a_scoped_answer_serves_only_the_keys_it_was_asked_for(server, make_client):
    server.set_flags({"flags": {"a": remote("a")}})
    client = make_client(flag_result_cache_ttl=60, _clock=FakeClock())
    assert client.evaluate_flags("u1", flag_keys=["a", "gone"]).results.keys() == {"a"}
    assert client.evaluate_flags("u1", flag_keys=["gone"]).results == {}  # answered: absent
    assert len(flag_requests(server)) == 1
    client.get_all_flags("u1")  # every flag was never asked for: a request
    assert len(flag_requests(server)) == 2


def test_clear_flag_cache(server, make_client):
    server.set_flags({"flags": {"a": remote("a")}})
    client = make_client(flag_result_cache_ttl=60, _clock=FakeClock())
    for who in ("u1", "u2"):
        client.get_feature_flag("a", who)
    client.clear_flag_cache("u1")
    client.get_feature_flag("a", "u1")
    client.get_feature_flag("a", "u2")
    assert len(flag_requests(server)) == 3  # u1 asked again, u2 from memory
    client.clear_flag_cache()
    client.get_feature_flag("a", "u2")
    assert len(flag_requests(server)) == 4
    make_client().clear_flag_cache()  # no cache configured: nothing to do, no error


# ---------------------------------------------------------------- item 5: event properties


def test_feature_flag_called_carries_evaluated_at_and_the_reason_description(server, make_client):
    server.set_flags({"flags": {"a": remote("a")}, "evaluatedAt": 1_764_000_000_123})
    client = make_client()
    client.get_feature_flag("a", "u1")
    with context(distinct_id="u2"):
        client.evaluate_flags().get_flag("a")
    client.flush(5)
    for properties in called(server):
        assert properties["$feature_flag_evaluated_at"] == 1_764_000_000_123
        assert properties["$feature_flag_reason"] == "Matched condition set 1"


def test_a_local_read_sends_no_evaluated_at(local):
    server, client = local
    client.get_feature_flag("checkout", "u1", person_properties={"plan": "free"})
    client.flush(5)
    (properties,) = called(server)
    assert "$feature_flag_evaluated_at" not in properties
    assert properties["locally_evaluated"] is True


# ---------------------------------------------------------------- item 4: device_id

BY_DEVICE = {
    "id": 8,
    "key": "by-device",
    "active": True,
    "bucketing_identifier": "device_id",
    "filters": {"groups": [{"properties": [], "rollout_percentage": 37.5}]},
}


def test_device_id_buckets_device_flags_as_posthog_does(make_client):
    import posthog.feature_flags as theirs

    with FakePostHog(
        flag_definitions={**DEFINITIONS, "flags": [CHECKOUT, BY_DEVICE]},
        flags={"flags": {"by-device": remote("by-device")}},
    ) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        values = set()
        for n in range(40):
            device = f"device-{n}"
            bucketing = theirs.resolve_bucketing_value(BY_DEVICE, f"user-{n}", device)
            expected = theirs.match_feature_flag_properties(
                BY_DEVICE, f"user-{n}", {}, device_id=device, bucketing_value=bucketing
            )
            for person in (f"user-{n}", "someone-else"):
                result = client.get_feature_flag_result(
                    "by-device", person, device_id=device, send_feature_flag_events=False
                )
                assert result.locally_evaluated and result.get_value() is expected
            values.add(expected)
        assert values == {True, False}
        snapshot = client.evaluate_flags("u1", device_id="device-3", flag_keys=["by-device"])
        assert snapshot.results["by-device"].locally_evaluated
        assert flag_requests(server) == []
        # Without a device id only the server can bucket it: one request, device_id null.
        assert client.get_feature_flag("by-device", "u1", send_feature_flag_events=False)
        assert flag_requests(server)[-1].json["device_id"] is None


def test_device_id_is_sent_with_flags_requests(server, make_client):
    server.set_flags({"flags": {"a": remote("a")}})
    client = make_client()
    client.get_feature_flag("a", "u1", device_id="d-1")
    client.evaluate_flags("u1", device_id="d-2")
    client.get_all_flags("u1", device_id="d-3")
    client.get_feature_flag_payload("a", "u1", device_id="d-4")
    assert [r.json["device_id"] for r in flag_requests(server)] == ["d-1", "d-2", "d-3", "d-4"]


# ---------------------------------------------------------------- item 8: no exceptions

COHORT_FLAG = {
    "id": 9,
    "key": "cohort-and-dependency",
    "active": True,
    "filters": {
        "groups": [
            {
                "properties": [
                    {"key": "id", "type": "cohort", "value": 1, "operator": "in"},
                    {"key": "age", "type": "person", "operator": "gt", "value": 18},
                ],
                "rollout_percentage": 37.5,
            },
            {
                "properties": [
                    {
                        "key": "checkout",
                        "type": "flag",
                        "operator": "flag_evaluates_to",
                        "value": True,
                        "dependency_chain": ["checkout"],
                    }
                ],
                "rollout_percentage": 100,
            },
        ]
    },
}
COHORTS = {
    "1": {
        "type": "OR",
        "values": [
            {
                "type": "AND",
                "values": [{"key": "country", "type": "person", "value": "US"}],
            }
        ],
    }
}


def exceptions_raised(call) -> tuple[object, int]:
    """``call()``'s result and how many exceptions were raised while it ran."""
    import sys

    raised = 0

    def tracer(frame, event, arg):
        nonlocal raised
        if event == "exception":
            raised += 1
        return tracer

    sys.settrace(tracer)
    try:
        result = call()
    finally:
        sys.settrace(None)
    return result, raised


def test_inconclusive_reads_raise_no_exception_on_the_hot_path(make_client):
    defs = {**DEFINITIONS, "flags": [CHECKOUT, COHORT_FLAG], "cohorts": COHORTS}
    with FakePostHog(flag_definitions=defs) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        client.reload_feature_flags()
        for key in ("checkout", "cohort-and-dependency"):
            for person in ({}, {"age": 30}, {"country": "US"}):  # each lacks something

                def read(key=key, person=person):
                    return client.get_feature_flag_result(
                        key,
                        "u1",
                        person_properties=person,
                        only_evaluate_locally=True,
                        send_feature_flag_events=False,
                    )

                read()  # warm: nothing imported or compiled on the way
                result, raised = exceptions_raised(read)
                assert result is None, (key, person)  # only the server could answer
                assert raised == 0, (key, person)
        complete = {"age": 30, "country": "US", "plan": "pro"}
        value = client.get_feature_flag("cohort-and-dependency", "u1", person_properties=complete)
        assert value in (True, False)
        assert flag_requests(server) == []


def test_the_identity_contexts_device_id_is_used_when_none_is_given(make_client):
    """As posthog 7.91.1 reads its context's device id: a read without ``device_id=``
    inside ``context(device_id=...)`` buckets device flags by it and sends it."""
    import posthog.feature_flags as theirs

    from posthog_otel import context

    with FakePostHog(
        flag_definitions={**DEFINITIONS, "flags": [CHECKOUT, BY_DEVICE]},
        flags={"flags": {"a": remote("a")}},
    ) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        for n in range(20):
            device = f"device-{n}"
            bucketing = theirs.resolve_bucketing_value(BY_DEVICE, "u1", device)
            expected = theirs.match_feature_flag_properties(
                BY_DEVICE, "u1", {}, device_id=device, bucketing_value=bucketing
            )
            with context(distinct_id="u1", device_id=device), context(session_id="s"):
                result = client.get_feature_flag_result("by-device", send_feature_flag_events=False)
                assert result is not None and result.get_value() is expected
        assert flag_requests(server) == []
        with context(distinct_id="u1", device_id="ctx-device"):
            client.get_feature_flag("a", send_feature_flag_events=False)
            client.evaluate_flags(flag_keys=["a"])
            client.get_feature_flag("a", device_id="explicit", send_feature_flag_events=False)
        sent = [r.json["device_id"] for r in flag_requests(server)]
        assert sent == ["ctx-device", "ctx-device", "explicit"]
