"""PostHogProvider through the real openfeature-sdk against the fake server."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.track import TrackingEventDetails

from posthog_otel import PostHogProvider, context
from posthog_otel.testing import FakeClock, FakePostHog

SECRET = "phs_secret"


def flag(key, groups, *, fid=1, variants=None, payloads=None, active=True):
    filters = {"groups": groups, "payloads": payloads or {}}
    if variants:
        filters["multivariate"] = {
            "variants": [{"key": k, "rollout_percentage": p} for k, p in variants]
        }
    return {"id": fid, "key": key, "version": 7, "active": active, "filters": filters}


PRO = [
    {"properties": [{"key": "plan", "value": "pro", "type": "person"}], "rollout_percentage": 100}
]
EVERYONE = [{"properties": [], "rollout_percentage": 100}]
DEFINITIONS = {
    "flags": [
        flag("targeted", PRO, payloads={"true": json.dumps({"color": "blue"})}),
        flag("static", EVERYONE, fid=2),
        flag("rollout", [{"properties": [], "rollout_percentage": 50}], fid=3),
        flag("numbers", EVERYONE, fid=4, variants=[("10", 50), ("2.5", 50)]),
        flag("words", EVERYONE, fid=5, variants=[("red", 100)], payloads={"red": "[1, 2]"}),
        flag("off", EVERYONE, fid=6, active=False),
        flag("fallback", [*PRO, {"properties": [], "rollout_percentage": 100}], fid=7),
    ],
    "group_type_mapping": {},
    "cohorts": {},
}


@pytest.fixture
def server():
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        yield server


@pytest.fixture
def of_client(server, make_client):
    client = make_client(host=server.url, secret_key=SECRET)
    provider = PostHogProvider(client)
    api.set_provider_and_wait(provider)
    yield api.get_client()
    api.shutdown()


def ctx(**attributes):
    return EvaluationContext("u1", attributes)


def test_boolean_targeting_and_payload_object(of_client):
    details = of_client.get_boolean_details("targeted", False, ctx(plan="pro"))
    assert (details.value, details.reason, details.error_code) == (
        True,
        Reason.TARGETING_MATCH,
        None,
    )
    assert dict(details.flag_metadata) == {
        "flag_id": 1,
        "version": 7,
        "posthog_reason": "Evaluated locally",
        "locally_evaluated": True,
    }
    assert of_client.get_object_value("targeted", {}, ctx(plan="pro")) == {"color": "blue"}
    miss = of_client.get_boolean_details("targeted", True, ctx(plan="free"))
    assert (miss.value, miss.reason) == (False, Reason.DEFAULT)


def test_reasons(of_client):
    assert of_client.get_boolean_details("static", False, ctx()).reason == Reason.STATIC
    assert of_client.get_boolean_details("rollout", False, ctx()).reason in (
        Reason.SPLIT,
        Reason.DEFAULT,
    )
    splits = {
        of_client.get_boolean_details("rollout", False, EvaluationContext(f"u{i}")).reason
        for i in range(40)
    }
    assert splits == {Reason.SPLIT, Reason.DEFAULT}
    off = of_client.get_boolean_details("off", True, ctx())
    assert (off.value, off.reason) == (True, Reason.DISABLED)  # the caller's default
    fallback = of_client.get_boolean_details("fallback", False, ctx(plan="free"))
    assert (fallback.value, fallback.reason) == (True, Reason.DEFAULT)
    assert of_client.get_string_details("numbers", "x", ctx()).reason == Reason.SPLIT


def test_typed_values_and_mismatches(of_client):
    variant = of_client.get_string_value("numbers", "x", ctx())
    assert variant in ("10", "2.5")
    words = of_client.get_string_details("words", "x", ctx())
    assert (words.value, words.variant) == ("red", "red")
    assert of_client.get_object_value("words", {}, ctx()) == [1, 2]
    number = of_client.get_float_details("numbers", 0.0, ctx())
    assert isinstance(number.value, float) and number.value == float(variant)
    integer = of_client.get_integer_details("numbers", 0, EvaluationContext("int-user"))
    assert integer.error_code in (None, ErrorCode.TYPE_MISMATCH)  # "2.5" is not an integer
    for resolve, key, default in (
        (of_client.get_boolean_details, "words", False),  # multivariate read as boolean
        (of_client.get_string_details, "static", "x"),  # a boolean flag has no variant
        (of_client.get_integer_details, "words", 0),
        (of_client.get_float_details, "words", 0.0),
        (of_client.get_object_details, "static", {}),  # no payload
    ):
        details = resolve(key, default, ctx())
        assert (details.value, details.error_code, details.reason) == (
            default,
            ErrorCode.TYPE_MISMATCH,
            Reason.ERROR,
        ), key


def test_errors(of_client, server):
    missing = of_client.get_boolean_details("missing", False, ctx())
    assert (missing.error_code, missing.reason) == (ErrorCode.FLAG_NOT_FOUND, Reason.ERROR)
    nobody = of_client.get_boolean_details("static", False, EvaluationContext())
    assert nobody.error_code == ErrorCode.TARGETING_KEY_MISSING
    with context(distinct_id="ctx-user"):
        assert of_client.get_boolean_value("static", False, EvaluationContext()) is True


def test_default_distinct_id(server, make_client):
    client = make_client(host=server.url, secret_key=SECRET)
    api.set_provider_and_wait(PostHogProvider(client, default_distinct_id="anonymous"))
    try:
        assert api.get_client().get_boolean_value("static", False) is True
    finally:
        api.shutdown()


def test_remote_evaluation_reasons_and_metadata(server, make_client):
    client = make_client(host=server.url)  # no secret key: remote
    records = {
        "matched": {"key": "matched", "enabled": True, "reason": {"code": "condition_match"}},
        "nomatch": {"key": "nomatch", "enabled": False, "reason": {"code": "no_condition_match"}},
        "disabled": {"key": "disabled", "enabled": False, "reason": {"code": "flag_disabled"}},
        "odd": {"key": "odd", "enabled": True, "reason": {"code": "something_new"}},
    }
    for record in records.values():
        record["metadata"] = {"id": 5, "version": 1, "payload": None}
    server.set_flags({"flags": records, "requestId": "req-1"})
    api.set_provider_and_wait(PostHogProvider(client))
    try:
        of = api.get_client()
        matched = of.get_boolean_details("matched", False, ctx())
        assert matched.reason == Reason.TARGETING_MATCH
        assert dict(matched.flag_metadata) == {
            "flag_id": 5,
            "version": 1,
            "posthog_reason": "condition_match",
            "locally_evaluated": False,
            "request_id": "req-1",
        }
        with pytest.raises(TypeError):
            matched.flag_metadata["x"] = 1  # type: ignore[index]
        assert of.get_boolean_details("nomatch", True, ctx()).reason == Reason.DEFAULT
        disabled = of.get_boolean_details("disabled", True, ctx())
        assert (disabled.value, disabled.reason) == (True, Reason.DISABLED)
        assert of.get_boolean_details("odd", False, ctx()).reason == Reason.UNKNOWN
        gone = of.get_boolean_details("gone", False, ctx())
        assert gone.error_code == ErrorCode.FLAG_NOT_FOUND
        body = next(r for r in server.requests if r.path == "/flags").json
        assert body["person_properties"] == {} and body["distinct_id"] == "u1"
    finally:
        api.shutdown()


def test_context_mapping(server, make_client):
    client = make_client(host=server.url)
    server.set_flags({"flags": {"f": {"key": "f", "enabled": True}}})
    api.set_provider_and_wait(PostHogProvider(client))
    try:
        api.get_client().get_boolean_value(
            "f",
            False,
            EvaluationContext(
                "u9",
                {
                    "plan": "pro",
                    "groups": {"company": "acme"},
                    "group_properties": {"company": {"size": 5}},
                },
            ),
        )
    finally:
        api.shutdown()
    body = next(r for r in server.requests if r.path == "/flags").json
    assert body["distinct_id"] == "u9"
    assert body["person_properties"] == {"plan": "pro"}
    assert body["groups"] == {"company": "acme"}
    assert body["group_properties"] == {"company": {"$group_key": "acme", "size": 5}}


def test_exposure_events_on_by_default_and_switchable(server, make_client):
    client = make_client(host=server.url, secret_key=SECRET)
    api.set_provider_and_wait(PostHogProvider(client))
    of = api.get_client()
    for _ in range(3):
        of.get_boolean_value("static", False, ctx())
    of.get_string_value("words", "x", ctx())
    api.shutdown()
    quiet = make_client(host=server.url, secret_key=SECRET)
    api.set_provider_and_wait(PostHogProvider(quiet, send_feature_flag_events=False))
    api.get_client().get_boolean_value("static", False, EvaluationContext("quiet-user"))
    api.shutdown()
    client.flush(5)
    quiet.flush(5)
    called = [e for e in server.events if e["event"] == "$feature_flag_called"]
    assert [(e["distinct_id"], e["properties"]["$feature_flag"]) for e in called] == [
        ("u1", "static"),
        ("u1", "words"),
    ]


def test_track(server, make_client):
    client = make_client(host=server.url, secret_key=SECRET)
    api.set_provider_and_wait(PostHogProvider(client))
    try:
        api.get_client().track(
            "checkout_completed",
            EvaluationContext("u1"),
            TrackingEventDetails(value=42.5, attributes={"currency": "EUR"}),
        )
    finally:
        api.shutdown()
    client.flush(5)
    (event,) = [e for e in server.events if e["event"] == "checkout_completed"]
    assert event["distinct_id"] == "u1"
    assert event["properties"]["value"] == 42.5 and event["properties"]["currency"] == "EUR"


def test_async_resolvers_do_not_block_the_loop(server, make_client):
    client = make_client(host=server.url)
    server.set_flags({"flags": {"slow": {"key": "slow", "enabled": True}}})
    server.delay_next(0.3, path="/flags")
    api.set_provider_and_wait(PostHogProvider(client))

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        value = await api.get_client().get_boolean_value_async("slow", False, ctx())
        task.cancel()
        return value, ticks

    try:
        value, ticks = asyncio.run(main())
    finally:
        api.shutdown()
    assert value is True and ticks >= 5


def test_events_configuration_changed_stale_error_ready(server, make_client):
    clock = FakeClock()
    client = make_client(
        host=server.url, secret_key=SECRET, _clock=clock, feature_flags_poll_interval=30
    )
    provider = PostHogProvider(client, stale_grace_period=60)
    seen: list[tuple[ProviderEvent, object]] = []
    arrived = threading.Condition()

    def record(event):
        def handler(details):
            with arrived:
                seen.append((event, details))
                arrived.notify_all()

        return handler

    handlers = {}
    for event in (
        ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
        ProviderEvent.PROVIDER_STALE,
        ProviderEvent.PROVIDER_ERROR,
        ProviderEvent.PROVIDER_READY,
    ):
        handlers[event] = record(event)
        api.add_handler(event, handlers[event])

    def wait_for(event):
        with arrived:
            assert arrived.wait_for(lambda: any(e == event for e, _ in seen), 5), seen
        return [d for e, d in seen if e == event][-1]

    def next_poll():
        # Move time on until the poller asks again (it may still be finishing the last
        # refresh when we advance, in which case that advance only sets its next deadline).
        before = len([r for r in server.requests if r.path == "/flags/definitions"])
        for _ in range(50):
            clock.advance(31)
            try:
                server.wait_for_requests(before + 1, timeout=0.1, path="/flags/definitions")
                return
            except TimeoutError:
                continue
        raise AssertionError("the poller did not poll")

    try:
        api.set_provider_and_wait(provider)
        wait_for(ProviderEvent.PROVIDER_READY)
        seen.clear()
        server.set_flag_definitions(
            {**DEFINITIONS, "flags": [*DEFINITIONS["flags"][:-1], flag("brand-new", EVERYONE)]}
        )
        next_poll()
        changed = wait_for(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
        assert sorted(changed.flags_changed) == ["brand-new", "fallback"]
        server.fail_next(10, 503, path="/flags/definitions")
        next_poll()
        wait_for(ProviderEvent.PROVIDER_STALE)
        assert not any(e == ProviderEvent.PROVIDER_ERROR for e, _ in seen)
        next_poll()
        next_poll()  # failing for 60 s now: past the grace period
        wait_for(ProviderEvent.PROVIDER_ERROR)
        server.clear_faults()
        seen.clear()
        next_poll()
        wait_for(ProviderEvent.PROVIDER_READY)
        # evaluations go on through STALE and ERROR: the last good definitions serve them
        assert api.get_client().get_boolean_value("brand-new", False, ctx()) is True
    finally:
        for event, handler in handlers.items():
            api.remove_handler(event, handler)
        api.shutdown()


def test_provider_shutdown_leaves_the_users_client_open(server, make_client):
    client = make_client(host=server.url, secret_key=SECRET)
    api.set_provider_and_wait(PostHogProvider(client))
    api.shutdown()
    assert client.capture("still open", "u1")


def test_provider_agrees_with_the_client_on_generated_cases(make_client):
    import random

    from .flag_cases import call, definitions

    rng = random.Random(5)
    with FakePostHog() as server:
        client = make_client(host=server.url, secret_key=SECRET)
        api.set_provider_and_wait(PostHogProvider(client, send_feature_flag_events=False))
        of = api.get_client()
        compared = 0
        try:
            for _ in range(150):
                defs = definitions(rng)
                defs["property_matching_version"] = defs["property_matching_version"] or 1
                server.set_flag_definitions(defs)
                client.reload_feature_flags()
                for _ in range(5):
                    inputs = call(rng)
                    context_ = EvaluationContext(
                        str(inputs["distinct_id"]),
                        {
                            **inputs["person_properties"],
                            "groups": inputs["groups"],
                            "group_properties": inputs["group_properties"],
                        },
                    )
                    for raw in defs["flags"]:
                        key = raw["key"]
                        expected = client.get_feature_flag(
                            key,
                            str(inputs["distinct_id"]),
                            groups=inputs["groups"],
                            person_properties=inputs["person_properties"],
                            group_properties=inputs["group_properties"],
                            send_feature_flag_events=False,
                        )
                        details = of.get_boolean_details(key, False, context_)
                        if expected is None:
                            assert details.error_code == ErrorCode.FLAG_NOT_FOUND
                        elif isinstance(expected, str):
                            assert details.error_code == ErrorCode.TYPE_MISMATCH
                            assert of.get_string_value(key, "?", context_) == expected
                        elif not raw["active"]:
                            assert details.reason == Reason.DISABLED
                        else:
                            assert details.value is expected, (key, expected, details)
                        compared += 1
        finally:
            api.shutdown()
    assert compared >= 1000


def test_a_huge_init_timeout_does_not_overflow_the_wait(server, make_client, caplog):
    import logging
    import threading

    from posthog_otel.openfeature import PostHogProvider

    caplog.set_level(logging.WARNING, logger="posthog_otel")

    client = make_client(personal_api_key="phx_secret")
    hold = server.hold_next(path="/flags/definitions")  # the wait really waits
    provider = PostHogProvider(client, init_timeout=1e12)
    release = threading.Timer(0.3, hold.set)  # not a synchronisation: only an end to it
    release.start()
    try:
        provider.initialize(None)  # neither raises (OverflowError) nor skips the wait
        # It returned because the definitions arrived: local evaluation works at once.
        assert client.get_feature_flag("static", "u1", only_evaluate_locally=True) is True
    finally:
        release.join()
    assert "not loaded within" not in caplog.text
    provider.shutdown()
