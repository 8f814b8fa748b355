"""The pytest plugin's default-client fixture, ``set_default_client``, and the fake
server's ``/flags`` answered from its own definitions (issue #10, item 5)."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator

import pytest
import structlog

import posthog_otel
from posthog_otel import Client, PostHogHandler
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY
from .test_flags_client import BETA

pytest_plugins = ["pytester"]

EVERYONE = {
    "id": 2,
    "key": "everyone",
    "version": 1,
    "active": True,
    "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
}
DEFINITIONS = {"flags": [BETA, EVERYONE], "group_type_mapping": {}, "cohorts": {}}


@pytest.fixture
def isolated_default() -> Iterator[None]:
    """Run with no default client and put back whatever was there."""
    previous, owned = posthog_otel.client.swap_default_client(None, owned=False)
    try:
        yield
    finally:
        current, current_owned = posthog_otel.client.swap_default_client(previous, owned=owned)
        if current is not None and current_owned:
            current.close(timeout=1)


USER_TESTS = textwrap.dedent(
    """
    import logging

    import posthog_otel
    from posthog_otel import PostHogHandler

    URLS = []


    def signup(name):  # application code: uses the default client
        posthog_otel.default_client().capture(name, "u1")


    def test_one(posthog_default_client, posthog_server):
        URLS.append(posthog_server.url)
        assert posthog_otel.default_client() is posthog_default_client
        signup("first")
        assert [e["event"] for e in posthog_server.wait_for_events(1)] == ["first"]


    def test_two(posthog_default_client, posthog_server):
        URLS.append(posthog_server.url)
        handler = PostHogHandler()  # built without a client: the default one
        log = logging.getLogger("app")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            log.info("second", extra={"distinct_id": "u2"})
            events = posthog_server.wait_for_events(1)
        finally:
            log.removeHandler(handler)
        assert [(e["event"], e["distinct_id"]) for e in events] == [("second", "u2")]
        assert URLS[0] != URLS[1]  # a fresh server per test


    def test_flags_need_one_setup(posthog_default_client, posthog_server):
        posthog_server.set_flag_definitions(DEFINITIONS)
        client = posthog_otel.default_client()
        assert client.get_feature_flag("everyone", "u1") is True
        assert client.is_feature_enabled("beta-ui", "u1", person_properties={"plan": "pro"})
        assert not client.is_feature_enabled("beta-ui", "u1", person_properties={"plan": "x"})
        assert client.get_feature_flag_payload(
            "beta-ui", "u1", person_properties={"plan": "pro"}
        ) == {"color": "blue"}
    """
)


# Logging and structlog configured once, at start-up (as Django's LOGGING is), with
# handlers that use the default client: it is built then, from the environment.
USER_CONFTEST = textwrap.dedent(
    """
    import logging.config

    import structlog

    from posthog_otel import PostHogProcessor

    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"posthog": {"class": "posthog_otel.PostHogHandler", "level": "INFO"}},
        "loggers": {"shop": {"handlers": ["posthog"], "level": "INFO"}},
    })
    structlog.configure(processors=[PostHogProcessor(), structlog.processors.KeyValueRenderer()])
    """
)
USER_STARTUP_TESTS = textwrap.dedent(
    """
    import logging

    import structlog

    import posthog_otel

    STARTUP = posthog_otel.default_client()


    def test_logging_configured_at_startup(posthog_default_client, posthog_server):
        logging.getLogger("shop").info("paid", extra={"distinct_id": "u1"})
        assert [e["event"] for e in posthog_server.wait_for_events(1)] == ["paid"]


    def test_structlog_configured_at_startup(posthog_default_client, posthog_server):
        structlog.get_logger().info("shipped", distinct_id="u2")
        assert [e["event"] for e in posthog_server.wait_for_events(1)] == ["shipped"]


    def test_put_back_afterwards():
        handler = logging.getLogger("shop").handlers[0]
        assert handler.client is STARTUP is posthog_otel.default_client()
    """
)


def test_each_user_test_gets_its_own_server_and_events(pytester, isolated_default):
    pytester.makepyfile(test_user=f"DEFINITIONS = {DEFINITIONS!r}\n" + USER_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    # The fixture put back what was there (nothing) and left no default behind.
    assert posthog_otel.client._default_client is None


def test_integrations_configured_at_startup_follow_the_fixture(
    pytester, isolated_default, monkeypatch
):
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.delenv("POSTHOG_PROJECT_API_KEY", raising=False)
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(test_startup=USER_STARTUP_TESTS)
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    finally:
        logging.getLogger("shop").handlers.clear()
        structlog.reset_defaults()
    result.assert_outcomes(passed=3)


def test_set_default_client_moves_handlers_built_without_a_client(
    server, monkeypatch, isolated_default
):
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.delenv("POSTHOG_PROJECT_API_KEY", raising=False)
    handler = PostHogHandler()  # the default client, disabled: no key in the environment
    built = handler.client
    log = logging.getLogger("test_default_follow")
    log.addHandler(handler)
    mine = Client(API_KEY, host=server.url, flush_interval=60)
    try:
        posthog_otel.set_default_client(mine)
        assert handler.client is mine
        assert built.capture("e", "u1") is None and built.stats.dropped["closed"] == 1
        log.warning("moved", extra={"distinct_id": "u1"})
        assert mine.flush()
        assert server.event_names() == ["moved"]
    finally:
        log.removeHandler(handler)
        mine.close(timeout=2)


def test_set_default_client_never_closes_a_users_client(server, isolated_default):
    mine = Client(API_KEY, host=server.url, flush_interval=60)
    try:
        posthog_otel.set_default_client(mine)
        assert posthog_otel.default_client() is mine
        posthog_otel.reset_default_client()
        assert posthog_otel.client._default_client is None
        assert mine.capture("still_open", "u1") is not None  # not closed for us
    finally:
        mine.close(timeout=2)


def test_reset_default_client_closes_the_one_it_built(server, monkeypatch, isolated_default):
    monkeypatch.setenv("POSTHOG_API_KEY", API_KEY)
    monkeypatch.setenv("POSTHOG_HOST", server.url)
    built = posthog_otel.default_client()
    assert posthog_otel.default_client() is built
    built.capture("before_reset", "u1")
    posthog_otel.reset_default_client()
    assert built.capture("after_reset", "u1") is None  # closed...
    assert server.event_names() == ["before_reset"]  # ...after delivering what it had
    fresh = posthog_otel.default_client()
    assert fresh is not built


def test_flags_answer_from_definitions_until_a_remote_answer_is_set(server):
    server.set_flag_definitions(DEFINITIONS)
    client = Client(API_KEY, host=server.url, flush_interval=60)  # no secret key: remote
    try:
        assert client.get_feature_flag("everyone", "u1") is True
        assert client.get_feature_flag("beta-ui", "u1") is None  # needs a property: unknown
        server.set_flags({"flags": {}})
        assert client.get_feature_flag("everyone", "u1") is None
        server.set_flags(None)
        assert client.get_all_flags("u1", person_properties={"plan": "pro"}) == {
            "beta-ui": True,
            "everyone": True,
        }
    finally:
        client.close(timeout=2)


def test_fake_server_flags_constructor_answer_wins():
    with FakePostHog(flag_definitions=DEFINITIONS, flags={"flags": {}}) as fake:
        client = Client(API_KEY, host=fake.url, flush_interval=60)
        try:
            assert client.get_feature_flag("everyone", "u1") is None
        finally:
            client.close(timeout=2)


def test_set_default_client_moves_processors_in_a_processor_formatter(
    server, monkeypatch, isolated_default
):
    from posthog_otel import PostHogProcessor

    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.delenv("POSTHOG_PROJECT_API_KEY", raising=False)
    in_chain, in_processors = PostHogProcessor(), PostHogProcessor()
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[in_chain],
            processors=[in_processors, structlog.processors.KeyValueRenderer()],
        )
    )
    log = logging.getLogger("test_formatter_follow")
    log.addHandler(handler)
    mine = Client(API_KEY, host=server.url, flush_interval=60)
    try:
        posthog_otel.set_default_client(mine)
        assert in_chain.client is mine and in_processors.client is mine
    finally:
        log.removeHandler(handler)
        mine.close(timeout=2)
