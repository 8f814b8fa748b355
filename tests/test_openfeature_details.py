"""Issue #13 item 9: OpenFeature details found by OpenFeature's own scenarios (STATIC
for a flag that answers everyone alike, READY without a CONFIGURATION_CHANGED before
it, a disabled flag's exposure reporting what the caller received)."""

from __future__ import annotations

import threading

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.flag_evaluation import Reason

from posthog_otel import PostHogProvider
from posthog_otel.testing import FakePostHog

from .test_openfeature import EVERYONE, SECRET, flag

NOBODY = [{"properties": [], "rollout_percentage": 0}]
DEFINITIONS = {
    "flags": [
        flag("zero", NOBODY, fid=1),
        flag("everyone", EVERYONE, fid=2),
        flag("one-variant", EVERYONE, fid=3, variants=[("red", 100)]),
        flag("zero-then-all", [*NOBODY, *EVERYONE], fid=4),
        flag("half", [{"properties": [], "rollout_percentage": 37.5}], fid=5),
        flag("split", EVERYONE, fid=6, variants=[("a", 50), ("b", 50)]),
        flag("off", EVERYONE, fid=7, active=False),
        flag("off-variants", EVERYONE, fid=8, variants=[("a", 100)], active=False),
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
    api.set_provider_and_wait(PostHogProvider(client))
    yield api.get_client(), client
    api.shutdown()


def test_a_flag_that_answers_everyone_alike_is_static(of_client):
    of, _ = of_client
    for i in range(20):
        context = EvaluationContext(f"person-{i}")
        zero = of.get_boolean_details("zero", True, context)
        assert (zero.value, zero.reason) == (False, Reason.STATIC)
        assert of.get_boolean_details("everyone", False, context).reason == Reason.STATIC
        assert of.get_boolean_details("zero-then-all", False, context).reason == Reason.STATIC
        red = of.get_string_details("one-variant", "x", context)
        assert (red.value, red.reason) == ("red", Reason.STATIC)
    reasons = {
        of.get_boolean_details("half", False, EvaluationContext(f"p{i}")).reason for i in range(40)
    }
    assert reasons == {Reason.SPLIT, Reason.DEFAULT}
    assert of.get_string_details("split", "x", EvaluationContext("p")).reason == Reason.SPLIT


def test_the_initial_load_is_ready_without_a_configuration_changed(server, make_client):
    client = make_client(host=server.url, secret_key=SECRET, preload_feature_flags=False)
    seen: list[ProviderEvent] = []
    lock = threading.Lock()

    def record(event):
        def handler(details):
            with lock:
                seen.append(event)

        return handler

    handlers = {
        event: record(event)
        for event in (ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, ProviderEvent.PROVIDER_READY)
    }
    for event, handler in handlers.items():
        api.add_handler(event, handler)
    try:
        api.set_provider_and_wait(PostHogProvider(client))
        assert client.flags.loader.definitions is not None  # loaded during initialize
        with lock:  # (a READY handler added while the no-op provider is set runs at once)
            assert ProviderEvent.PROVIDER_CONFIGURATION_CHANGED not in seen, seen
            assert seen[-1] == ProviderEvent.PROVIDER_READY
    finally:
        for event, handler in handlers.items():
            api.remove_handler(event, handler)
        api.shutdown()


def test_a_disabled_flag_reports_the_callers_default(server, of_client):
    of, client = of_client
    off = of.get_boolean_details("off", True, EvaluationContext("u1"))
    assert (off.value, off.reason) == (True, Reason.DISABLED)
    variant = of.get_string_details("off-variants", "fallback", EvaluationContext("u1"))
    assert (variant.value, variant.reason) == ("fallback", Reason.DISABLED)
    assert of.get_integer_value("off-variants", 3, EvaluationContext("u2")) == 3
    client.flush(5)
    responses = {
        (e["distinct_id"], e["properties"]["$feature_flag"]): e["properties"][
            "$feature_flag_response"
        ]
        for e in server.events
        if e["event"] == "$feature_flag_called"
    }
    # u2's number cannot be a flag value: no exposure claims another value for it.
    assert responses == {("u1", "off"): True, ("u1", "off-variants"): "fallback"}


def test_a_remote_exposure_reports_the_default_and_keeps_its_error(make_client):
    disabled = {"key": "off", "enabled": False, "reason": {"code": "flag_disabled"}}
    with FakePostHog(flags={"flags": {"off": disabled}}) as remote:
        client = make_client(host=remote.url)  # no secret key: every read is remote
        api.set_provider_and_wait(PostHogProvider(client))
        try:
            of = api.get_client()
            off = of.get_boolean_details("off", True, EvaluationContext("u1"))
            remote.fail_next(1, 500, path="/flags")
            failed = of.get_boolean_details("off", True, EvaluationContext("u2"))
        finally:
            api.shutdown()
        client.flush(5)
        exposures = {
            e["distinct_id"]: (
                e["properties"]["$feature_flag_response"],
                e["properties"].get("$feature_flag_error"),
            )
            for e in remote.events
            if e["event"] == "$feature_flag_called"
        }
    assert (off.value, off.reason) == (True, Reason.DISABLED)
    assert failed.value is True and failed.error_code is not None
    assert exposures == {"u1": (True, None), "u2": (None, "api_error_500")}
