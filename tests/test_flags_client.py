"""The client's flag API against the fake server: local first, one remote call when
needed, exposure events, identity rules, overrides, snapshots."""

from __future__ import annotations

import json
import threading

import pytest

from posthog_otel import FlagEvaluations, FlagResult, context
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY

SECRET = "phs_test_secret"

BETA = {
    "id": 1,
    "key": "beta-ui",
    "version": 3,
    "active": True,
    "filters": {
        "groups": [
            {
                "properties": [{"key": "plan", "value": "pro", "type": "person"}],
                "rollout_percentage": 100,
            }
        ],
        "payloads": {"true": json.dumps({"color": "blue"})},
    },
}
SPLIT = {
    "id": 2,
    "key": "split",
    "version": 1,
    "active": True,
    "filters": {
        "groups": [{"properties": [], "rollout_percentage": 100}],
        "multivariate": {
            "variants": [
                {"key": "control", "rollout_percentage": 50},
                {"key": "test", "rollout_percentage": 50},
            ]
        },
        "payloads": {"test": json.dumps([1, 2])},
    },
}
COMPANY = {
    "id": 3,
    "key": "company-beta",
    "active": True,
    "filters": {"aggregation_group_type_index": 0, "groups": [{"rollout_percentage": 100}]},
}
DEFINITIONS = {
    "flags": [BETA, SPLIT, COMPANY],
    "group_type_mapping": {"0": "company"},
    "cohorts": {},
}


def remote_record(key, enabled=True, variant=None, payload=None):
    return {
        "key": key,
        "enabled": enabled,
        "variant": variant,
        "reason": {
            "code": "condition_match",
            "condition_index": 0,
            "description": "Matched condition set 1",
        },
        "metadata": {"id": 9, "version": 4, "payload": payload},
    }


@pytest.fixture
def flags_server():
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        yield server


@pytest.fixture
def flags_client(flags_server, make_client):
    return make_client(host=flags_server.url, secret_key=SECRET)


def flag_requests(server):
    return [r for r in server.requests if r.path == "/flags"]


def called_events(server):
    return [e for e in server.events if e["event"] == "$feature_flag_called"]


def test_local_evaluation_makes_no_flags_request(flags_server, flags_client):
    result = flags_client.get_feature_flag_result(
        "beta-ui", "u1", person_properties={"plan": "pro"}
    )
    assert result == FlagResult(
        key="beta-ui",
        enabled=True,
        payload={"color": "blue"},
        reason="Evaluated locally",
        locally_evaluated=True,
        id=1,
        version=3,
    )
    assert (
        flags_client.is_feature_enabled("beta-ui", "u1", person_properties={"plan": "free"})
        is False
    )
    assert flags_client.get_feature_flag("split", "u1") in ("control", "test")
    assert flag_requests(flags_server) == []
    definitions_requests = [r for r in flags_server.requests if r.path == "/flags/definitions"]
    assert len(definitions_requests) == 1
    request = definitions_requests[0]
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.query["token"] == [API_KEY] and "send_cohorts" in request.query


def test_inconclusive_falls_back_to_one_scoped_remote_call(flags_server, flags_client):
    flags_server.set_flags({"flags": {"beta-ui": remote_record("beta-ui", payload='{"x": 1}')}})
    result = flags_client.get_feature_flag_result("beta-ui", "u1")  # plan not passed
    assert result.enabled and not result.locally_evaluated
    assert result.payload == {"x": 1} and result.reason == "Matched condition set 1"
    assert result.reason_code == "condition_match"
    (request,) = flag_requests(flags_server)
    assert request.query == {"v": ["2"]}
    body = request.json
    assert body["flag_keys_to_evaluate"] == ["beta-ui"]
    assert body["distinct_id"] == "u1" and body["api_key"] == API_KEY
    assert body["geoip_disable"] is True
    assert body["groups"] == {} and body["group_properties"] == {}
    assert "authorization" not in request.headers
    assert request.headers["user-agent"].startswith("posthog-python/")


def test_only_evaluate_locally_never_calls_remote(flags_server, flags_client):
    assert flags_client.get_feature_flag("beta-ui", "u1", only_evaluate_locally=True) is None
    assert flag_requests(flags_server) == []


def test_force_remote_skips_definitions(flags_server, make_client):
    client = make_client(host=flags_server.url)  # no secret key: remote only
    flags_server.set_flags({"flags": {"beta-ui": remote_record("beta-ui", enabled=False)}})
    assert client.get_feature_flag("beta-ui", "u1", person_properties={"plan": "pro"}) is False
    assert [r.path for r in flags_server.requests] == ["/flags"]


def test_group_flag_without_its_group_asks_the_server(flags_server, flags_client):
    flags_server.set_flags({"flags": {"company-beta": remote_record("company-beta")}})
    assert flags_client.get_feature_flag("company-beta", "u1", groups={"company": "acme"}) is True
    assert flag_requests(flags_server) == []  # local: the group was passed
    assert flags_client.get_feature_flag("company-beta", "u1") is True
    assert len(flag_requests(flags_server)) == 1  # LFE-22: inconclusive without it


def test_no_identity_means_no_request_and_no_event(flags_server, flags_client):
    with context(session_id="s1"):
        assert flags_client.get_feature_flag("beta-ui") is None
        assert flags_client.is_feature_enabled("beta-ui", default_value=True) is True
        assert flags_client.evaluate_flags().results == {}
        assert flags_client.get_all_flags() == {}
    flags_client.flush(5)
    assert flag_requests(flags_server) == [] and called_events(flags_server) == []


def test_identity_context_supplies_the_distinct_id(flags_server, flags_client):
    with context(distinct_id="ctx-user"):
        assert flags_client.get_feature_flag("beta-ui", person_properties={"plan": "pro"})
    flags_client.flush(5)
    assert called_events(flags_server)[0]["distinct_id"] == "ctx-user"


def test_remote_errors_return_the_default_and_record_the_error(flags_server, make_client):
    client = make_client(host=flags_server.url)
    flags_server.fail_next(1, 500, path="/flags")
    assert client.is_feature_enabled("beta-ui", "u1", default_value=True) is True
    assert client.get_feature_flag("missing", "u1") is None
    client.flush(5)
    errors = [e["properties"].get("$feature_flag_error") for e in called_events(flags_server)]
    assert errors == ["api_error_500", "flag_missing"]


def test_quota_limited_is_an_error(flags_server, make_client):
    client = make_client(host=flags_server.url)
    flags_server.set_flags({"flags": {}, "quotaLimited": ["feature_flags"]})
    assert client.get_feature_flag("beta-ui", "u1") is None
    client.flush(5)
    assert called_events(flags_server)[0]["properties"]["$feature_flag_error"] == "quota_limited"


def test_legacy_response_shape_is_parsed(flags_server, make_client):
    client = make_client(host=flags_server.url)
    flags_server.set_flags(
        {
            "featureFlags": {"beta-ui": "test", "off": False},
            "featureFlagPayloads": {"beta-ui": "[3]"},
        }
    )
    result = client.get_feature_flag_result("beta-ui", "u1")
    assert result.variant == "test" and result.payload == [3]
    assert client.get_feature_flag("off", "u1") is False


# ---------------------------------------------------------------- exposure


def test_feature_flag_called_once_per_value_and_groups(flags_server, flags_client):
    flags_server.set_flags({"flags": {"company-beta": remote_record("company-beta")}})
    for _ in range(3):
        flags_client.get_feature_flag("beta-ui", "user-123", person_properties={"plan": "pro"})
    flags_client.get_feature_flag("beta-ui", "user-123", person_properties={"plan": "free"})
    groups_a = {"company": "company-123", "team": "team-1"}
    groups_b = {"team": "team-1", "company": "company-123"}
    flags_client.get_feature_flag("company-beta", "user-123", groups=groups_a)
    flags_client.get_feature_flag("company-beta", "user-123", groups=groups_b)
    flags_client.get_feature_flag("company-beta", "user-123", groups={"company": "company-456"})
    flags_client.flush(5)
    events = called_events(flags_server)
    responses = [
        (e["properties"]["$feature_flag"], e["properties"]["$feature_flag_response"])
        for e in events
    ]
    assert responses == [
        ("beta-ui", True),
        ("beta-ui", False),
        ("company-beta", True),
        ("company-beta", True),
    ]
    first = events[0]["properties"]
    assert first["$feature/beta-ui"] is True and first["locally_evaluated"] is True
    assert first["$feature_flag_id"] == 1 and first["$feature_flag_version"] == 3
    assert first["$feature_flag_payload"] == {"color": "blue"}
    assert events[2]["properties"]["$groups"] == groups_a


def test_payload_calls_are_silent(flags_server, flags_client):
    payload = flags_client.get_feature_flag_payload(
        "beta-ui", "u1", person_properties={"plan": "pro"}
    )
    assert payload == {"color": "blue"}
    assert (
        flags_client.get_feature_flag_payload(
            "beta-ui", "u1", person_properties={"plan": "pro"}, match_value="other"
        )
        is None
    )
    flags_client.flush(5)
    assert called_events(flags_server) == []


def test_send_feature_flag_events_false(flags_server, flags_client):
    flags_client.get_feature_flag("split", "u1", send_feature_flag_events=False)
    flags_client.flush(5)
    assert called_events(flags_server) == []


def test_concurrent_reads_send_one_event(flags_server, flags_client):
    barrier = threading.Barrier(8)

    def read():
        barrier.wait()
        flags_client.get_feature_flag("split", "same-user")

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flags_client.flush(5)
    assert len(called_events(flags_server)) == 1


# ---------------------------------------------------------------- many flags


def test_get_all_flags_and_payloads(flags_server, flags_client):
    flags_server.set_flags({"flags": {"beta-ui": remote_record("beta-ui", payload='"remote"')}})
    everything = flags_client.get_all_flags_and_payloads(
        "u1", groups={"company": "acme"}, person_properties={"plan": "pro"}
    )
    assert everything["featureFlags"]["beta-ui"] is True
    assert everything["featureFlags"]["company-beta"] is True
    assert everything["featureFlagPayloads"]["beta-ui"] == {"color": "blue"}
    assert flag_requests(flags_server) == []  # all decided locally
    flags = flags_client.get_all_flags("u1")  # beta-ui and company-beta undecidable locally
    (request,) = flag_requests(flags_server)
    assert sorted(request.json["flag_keys_to_evaluate"]) == ["beta-ui", "company-beta"]
    assert flags["beta-ui"] is True and flags["split"] in ("control", "test")
    flags_client.flush(5)
    assert called_events(flags_server) == []  # bulk reads are silent


def test_evaluate_flags_snapshot(flags_server, flags_client):
    flags_server.set_flags({"flags": {"remote-only": remote_record("remote-only", variant="v")}})
    snapshot = flags_client.evaluate_flags(
        "u1", flag_keys=["beta-ui", "remote-only"], person_properties={"plan": "pro"}
    )
    assert isinstance(snapshot, FlagEvaluations)
    assert sorted(snapshot.results) == ["beta-ui", "remote-only"]
    (request,) = flag_requests(flags_server)
    assert request.json["flag_keys_to_evaluate"] == ["beta-ui", "remote-only"]
    assert snapshot.get_flag_payload("beta-ui") == {"color": "blue"}
    assert snapshot.is_enabled("beta-ui") is True
    assert snapshot.is_enabled("nope", default_value=True) is True
    assert snapshot.get_flag("remote-only") == "v"
    assert snapshot.get_flag("remote-only") == "v"
    accessed = snapshot.only_accessed()
    assert sorted(accessed.results) == ["beta-ui", "remote-only"]
    flags_client.capture("checkout", "u1", {"$feature/beta-ui": "caller wins"}, flags=accessed)
    flags_client.flush(5)
    called = called_events(flags_server)
    assert [e["properties"]["$feature_flag"] for e in called] == ["beta-ui", "nope", "remote-only"]
    assert called[1]["properties"]["$feature_flag_error"] == "flag_missing"  # EVF-13
    assert called[1]["properties"]["$feature_flag_response"] is None
    checkout = next(e for e in flags_server.events if e["event"] == "checkout")
    assert checkout["properties"]["$feature/beta-ui"] == "caller wins"
    assert checkout["properties"]["$feature/remote-only"] == "v"
    assert checkout["properties"]["$active_feature_flags"] == ["beta-ui", "remote-only"]
    assert flags_client.evaluate_flags("u1", flag_keys=[]).results == {}


def test_snapshot_filters(flags_server, flags_client, caplog):
    snapshot = flags_client.evaluate_flags("u1", person_properties={"plan": "pro"})
    assert snapshot.only_accessed().results == {}  # nothing read yet: empty, not everything
    only = snapshot.only(["beta-ui", "unknown"])
    assert sorted(only.results) == ["beta-ui"] and "unknown" in caplog.text
    assert only.get_flag("split") is None  # filtered snapshots do not report flag_missing
    only.is_enabled("beta-ui")
    assert snapshot.only_accessed().results == {}  # the parent's tracking is its own
    flags_client.flush(5)
    assert [e["properties"]["$feature_flag"] for e in called_events(flags_server)] == ["beta-ui"]


def test_local_values_are_not_replaced_by_remote_ones(flags_server, flags_client):
    flags_server.set_flags(
        {"flags": {"split": remote_record("split", variant="remote"), "x": remote_record("x")}}
    )
    snapshot = flags_client.evaluate_flags("u1", flag_keys=["split", "x"])
    (request,) = flag_requests(flags_server)
    assert request.json["flag_keys_to_evaluate"] == ["split", "x"]  # the original keys
    assert snapshot.results["split"].locally_evaluated  # EVF-04
    assert snapshot.get_flag("x") is True


def test_send_feature_flags_uses_local_definitions(flags_server, flags_client):
    flags_client.reload_feature_flags()
    flags_client.capture(
        "purchase", "u1", {"plan": "pro"}, send_feature_flags=True, groups={"company": "acme"}
    )
    flags_client.flush(5)
    (event,) = [e for e in flags_server.events if e["event"] == "purchase"]
    props = event["properties"]
    assert props["$feature/split"] in ("control", "test")
    assert props["$feature/company-beta"] is True
    assert "split" in props["$active_feature_flags"]
    assert flag_requests(flags_server) == []


# ---------------------------------------------------------------- overrides


def test_property_overrides_client_and_context(flags_server, flags_client):
    flags_client.set_person_properties_for_flags({"plan": "pro"})
    assert flags_client.is_feature_enabled("beta-ui", "u1") is True
    assert (
        flags_client.is_feature_enabled("beta-ui", "u1", person_properties={"plan": "free"})
        is False
    )
    with context(distinct_id="u2"):
        flags_client.set_person_properties_for_flags({"plan": "free"})
        assert flags_client.is_feature_enabled("beta-ui") is False
        flags_client.reset_person_properties_for_flags()  # this context's: plan=pro again
        assert flags_client.get_feature_flag("beta-ui", only_evaluate_locally=True) is True
    assert flags_client.is_feature_enabled("beta-ui", "u1") is True  # client-level untouched
    flags_client.reset_person_properties_for_flags()
    assert flags_client.get_feature_flag("beta-ui", "u1", only_evaluate_locally=True) is None
    flags_client.set_group_properties_for_flags({"company": {"size": 5}})
    flags_client.reset_group_properties_for_flags()


def test_disabled_client_answers_defaults(flags_server, make_client):
    client = make_client(host=flags_server.url, disabled=True, secret_key=SECRET)
    assert client.get_feature_flag("beta-ui", "u1") is None
    assert client.is_feature_enabled("beta-ui", "u1", default_value=True) is True
    assert client.evaluate_flags("u1").results == {}
    assert client.get_feature_flag_result("beta-ui", "u1") is None
    client.reload_feature_flags()
    assert flags_server.requests == []


def test_send_feature_flags_without_definitions_uses_the_flags_worker(flags_server, make_client):
    client = make_client(host=flags_server.url)  # no secret key: no local definitions
    flags_server.set_flags(
        {"flags": {"beta-ui": remote_record("beta-ui"), "off": remote_record("off", False)}}
    )
    hold = flags_server.hold_next(path="/flags")
    returned = client.capture("purchase", "u1", send_feature_flags=True)
    returned2 = client.capture("purchase", "u1", send_feature_flags=True)
    assert returned and returned2  # the caller did not wait for /flags
    hold.set()
    assert client.flush(5)
    events = [e for e in flags_server.events if e["event"] == "purchase"]
    assert [e["uuid"] for e in events] == [returned, returned2]
    for event in events:
        assert event["properties"]["$feature/beta-ui"] is True
        assert event["properties"]["$feature/off"] is False
        assert event["properties"]["$active_feature_flags"] == ["beta-ui"]
    assert len(flag_requests(flags_server)) == 1  # shared by both events


def test_send_feature_flags_when_flags_fail_still_sends(flags_server, make_client):
    client = make_client(host=flags_server.url)
    flags_server.fail_next(1, 500, path="/flags")
    assert client.capture("purchase", "u1", send_feature_flags=True)
    assert client.flush(5)
    (event,) = [e for e in flags_server.events if e["event"] == "purchase"]
    assert "$active_feature_flags" not in event["properties"]


def test_minimal_flag_called_events(make_client):
    plain = {**BETA, "key": "plain"}
    no_experiment = {**BETA, "key": "no-exp", "has_experiment": False}
    with_experiment = {**BETA, "key": "exp", "has_experiment": True}
    definitions = {
        "flags": [plain, no_experiment, with_experiment],
        "group_type_mapping": {},
        "cohorts": {},
        "minimal_flag_called_events": True,
    }
    with FakePostHog(flag_definitions=definitions) as server:
        client = make_client(
            host=server.url, secret_key=SECRET, super_properties={"team": "growth"}
        )
        pro = {"plan": "pro"}
        for key in ("plain", "no-exp", "exp"):
            client.get_feature_flag(key, "u1", person_properties=pro)
        client.reload_feature_flags()  # a 304 keeps the gate with the definitions
        client.get_feature_flag("no-exp", "u2", person_properties=pro)
        client.flush(5)
        by_key = {
            (e["distinct_id"], e["properties"]["$feature_flag"]): e["properties"]
            for e in called_events(server)
        }
        assert by_key[("u1", "plain")]["team"] == "growth"  # has_experiment unknown: full
        assert by_key[("u1", "exp")]["team"] == "growth"
        assert by_key[("u1", "exp")]["$feature_flag_has_experiment"] is True
        for did in ("u1", "u2"):
            minimal = by_key[(did, "no-exp")]
            assert "team" not in minimal and "$feature/no-exp" not in minimal
            assert "$feature_flag_payload" not in minimal
            assert minimal["$feature_flag_response"] is True
            assert minimal["$feature_flag_has_experiment"] is False
            assert minimal["$lib"] == "posthog-otel"
        statuses = [r.status for r in server.requests if r.path == "/flags/definitions"]
        assert statuses == [200, 304]


def test_minimal_events_from_a_remote_gate(flags_server, make_client):
    client = make_client(host=flags_server.url, super_properties={"team": "growth"})
    record = remote_record("beta-ui")
    record["metadata"]["has_experiment"] = False
    flags_server.set_flags({"flags": {"beta-ui": record}, "minimalFlagCalledEvents": True})
    client.get_feature_flag("beta-ui", "u1")
    client.flush(5)
    (event,) = called_events(flags_server)
    assert "team" not in event["properties"]
    assert event["properties"]["$feature_flag_request_id"]


def test_opt_in_result_cache(flags_server, make_client):
    from posthog_otel.testing import FakeClock

    clock = FakeClock()
    client = make_client(host=flags_server.url, flag_result_cache_ttl=60, _clock=clock)
    flags_server.set_flags({"flags": {"beta-ui": remote_record("beta-ui", payload='{"c": 1}')}})
    assert client.get_feature_flag("beta-ui", "u1") is True
    assert client.get_feature_flag("beta-ui", "u1") is True
    assert client.get_feature_flag_payload("beta-ui", "u1") == {"c": 1}
    assert len(flag_requests(flags_server)) == 1  # later reads come from memory
    assert client.get_feature_flag("beta-ui", "u2") is True  # another person: a request
    assert len(flag_requests(flags_server)) == 2
    clock.advance(61)
    assert client.get_feature_flag("beta-ui", "u1") is True  # expired: asked again
    assert len(flag_requests(flags_server)) == 3
    flags_server.fail_next(1, 500, path="/flags")
    clock.advance(61)
    assert client.get_feature_flag("beta-ui", "u1") is None  # an error is not cached
    assert client.get_feature_flag("beta-ui", "u1") is True


def test_no_result_cache_by_default(flags_server, make_client):
    client = make_client(host=flags_server.url)
    flags_server.set_flags({"flags": {"beta-ui": remote_record("beta-ui")}})
    client.get_feature_flag("beta-ui", "u1")
    client.get_feature_flag("beta-ui", "u1")
    assert len(flag_requests(flags_server)) == 2


def _ask_with_a_deleted_flag(client):
    return client.evaluate_flags(
        "u1", flag_keys=["beta-ui", "deleted"], person_properties={"plan": "pro"}
    )


def test_a_deleted_flag_is_probed_once_per_refresh(flags_server, flags_client):
    """EVF-06: a key absent from the definitions and from a complete /flags answer is
    not asked for again until the next successful refresh (a 304 counts)."""
    flags_server.set_flags({"flags": {}})
    for _ in range(3):
        snapshot = _ask_with_a_deleted_flag(flags_client)
        assert sorted(snapshot.results) == ["beta-ui"]
    assert len(flag_requests(flags_server)) == 1
    definition_fetches = len([r for r in flags_server.requests if r.path == "/flags/definitions"])
    flags_client.reload_feature_flags()  # answered 304: still a successful refresh
    assert len([r for r in flags_server.requests if r.path == "/flags/definitions"]) == (
        definition_fetches + 1
    )
    _ask_with_a_deleted_flag(flags_client)
    _ask_with_a_deleted_flag(flags_client)
    assert len(flag_requests(flags_server)) == 2


@pytest.mark.parametrize(
    "answer",
    [
        {"flags": {}, "errorsWhileComputingFlags": True},
        {"flags": {}, "quotaLimited": ["feature_flags"]},
    ],
)
def test_no_negative_knowledge_from_an_incomplete_answer(flags_server, flags_client, answer):
    flags_server.set_flags(answer)
    _ask_with_a_deleted_flag(flags_client)
    _ask_with_a_deleted_flag(flags_client)
    assert len(flag_requests(flags_server)) == 2


def test_no_negative_knowledge_from_a_failed_request(flags_server, flags_client):
    flags_server.set_flags({"flags": {}})
    flags_server.fail_next(path="/flags", status=500)
    _ask_with_a_deleted_flag(flags_client)
    _ask_with_a_deleted_flag(flags_client)
    _ask_with_a_deleted_flag(flags_client)
    assert len(flag_requests(flags_server)) == 2  # the failure taught nothing; the answer did


def test_an_unreadable_definition_only_sends_that_flag_to_the_server(make_client, caplog):
    unreadable = {
        "id": 4,
        "key": "unreadable",
        "active": True,
        "filters": {"groups": [{"rollout_percentage": 100}], "multivariate": {"variants": "?"}},
    }
    definitions = {**DEFINITIONS, "flags": [unreadable, *DEFINITIONS["flags"]]}
    with FakePostHog(flag_definitions=definitions) as server:
        server.set_flags({"flags": {"unreadable": remote_record("unreadable", variant="v")}})
        client = make_client(host=server.url, secret_key=SECRET)
        assert client.get_feature_flag("beta-ui", "u1", person_properties={"plan": "pro"})
        assert flag_requests(server) == []  # the other flags are still evaluated locally
        assert client.get_feature_flag("unreadable", "u1") == "v"
        assert len(flag_requests(server)) == 1
        assert "'unreadable' has a definition this SDK cannot read" in caplog.text


def test_a_local_single_read_exposes_no_reason_a_snapshot_read_does(flags_server, flags_client):
    """As posthog 7.91.1: a single-flag read of a local value sends no
    ``$feature_flag_reason``; a read from an ``evaluate_flags`` snapshot sends
    ``Evaluated locally``."""
    flags_client.reload_feature_flags()
    assert flags_client.get_feature_flag("split", "single") is not None
    snapshot = flags_client.evaluate_flags("snap", only_evaluate_locally=True)
    assert snapshot.get_flag("split") is not None
    flags_client.flush(5)
    by_id = {e["distinct_id"]: e["properties"] for e in called_events(flags_server)}
    assert by_id["single"]["locally_evaluated"] is True
    assert "$feature_flag_reason" not in by_id["single"]
    assert by_id["snap"]["$feature_flag_reason"] == "Evaluated locally"


def test_a_flag_the_answer_lacks_is_exposed_with_its_request_id_and_time(make_client):
    """As posthog 7.91.1: the ``flag_missing`` exposure of a successful ``/flags`` answer
    carries that answer's request id and evaluation time."""
    answer = {"flags": {}, "requestId": "req-42", "evaluatedAt": 1_700_000_000_000}
    with FakePostHog() as server:
        server.set_flags(answer)
        client = make_client(host=server.url)
        assert client.get_feature_flag("absent", "u1") is None
        client.flush(5)
        (called,) = called_events(server)
    props = called["properties"]
    assert props["$feature_flag_error"] == "flag_missing"
    assert props["$feature_flag_request_id"] == "req-42"
    assert props["$feature_flag_evaluated_at"] == 1_700_000_000_000
