"""Definitions loader and the /flags retry policy, against the fake server."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time

import pytest

from posthog_otel.testing import FakeClock, FakePostHog, InMemoryFlagDefinitionCache

from .conftest import started_threads

SECRET = "phs_secret"
BETA = {
    "id": 1,
    "key": "beta-ui",
    "active": True,
    "filters": {"groups": [{"rollout_percentage": 100}]},
}
DEFS = {"flags": [BETA], "group_type_mapping": {}, "cohorts": {}}


def definition_requests(server):
    return [r for r in server.requests if r.path == "/flags/definitions"]


def flag_requests(server):
    return [r for r in server.requests if r.path == "/flags"]


@pytest.fixture
def defs_server():
    with FakePostHog(flag_definitions=DEFS) as server:
        yield server


def loaded_keys(client):
    definitions = client.flags.loader.definitions
    return None if definitions is None else sorted(definitions.flags)


def test_etag_and_304(defs_server, make_client):
    client = make_client(host=defs_server.url, secret_key=SECRET, preload_feature_flags=False)
    client.reload_feature_flags()
    client.reload_feature_flags()
    first, second = definition_requests(defs_server)
    assert first.status == 200 and "if-none-match" not in first.headers
    assert second.status == 304 and second.headers["if-none-match"]
    assert loaded_keys(client) == ["beta-ui"]
    defs_server.set_flag_definitions({**DEFS, "flags": [BETA, {**BETA, "key": "new"}]})
    client.reload_feature_flags()
    assert loaded_keys(client) == ["beta-ui", "new"]


@pytest.mark.parametrize("status", [503, 500, 429])
def test_errors_keep_the_last_good_definitions(defs_server, make_client, caplog, status):
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    client = make_client(host=defs_server.url, secret_key=SECRET)
    client.reload_feature_flags()
    defs_server.fail_next(1, status, path="/flags/definitions")
    client.reload_feature_flags()
    assert loaded_keys(client) == ["beta-ui"]
    assert "flag definitions refresh failed" in caplog.text


def test_network_error_keeps_definitions(defs_server, make_client):
    client = make_client(host=defs_server.url, secret_key=SECRET)
    client.reload_feature_flags()
    defs_server.drop_next(1, path="/flags/definitions")
    client.reload_feature_flags()
    assert loaded_keys(client) == ["beta-ui"]


@pytest.mark.parametrize("status", [401, 402, 403])
def test_auth_and_quota_errors_clear_definitions(defs_server, make_client, status):
    client = make_client(host=defs_server.url, secret_key=SECRET)
    client.reload_feature_flags()
    # The manual refresh and the poller's first one are both refused.
    defs_server.fail_next(2, status, path="/flags/definitions")
    client.reload_feature_flags()
    assert client.flags.loader.definitions is None and client.flags.loader.etag is None
    defs_server.set_flags({"flags": {"beta-ui": {"key": "beta-ui", "enabled": False}}})
    assert client.get_feature_flag("beta-ui", "u1") is False  # remote now
    assert len(flag_requests(defs_server)) == 1
    loader = client.flags.loader
    expected_wait = loader.poll_interval * (5 if status in (401, 403) else 1)
    assert loader.next_wait == min(expected_wait, 300)


def test_malformed_body_keeps_definitions(make_client):
    with FakePostHog(flag_definitions=DEFS) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        client.reload_feature_flags()
        server.set_flag_definitions({"not": "definitions"})
        client.reload_feature_flags()
        assert loaded_keys(client) == ["beta-ui"]


def test_poll_interval_follows_the_clock(defs_server, make_client):
    clock = FakeClock()
    client = make_client(
        host=defs_server.url, secret_key=SECRET, _clock=clock, feature_flags_poll_interval=30
    )
    assert client.get_feature_flag("beta-ui", "u1") is True  # waits for the first load
    assert len(definition_requests(defs_server)) == 1
    clock.advance(29)
    with pytest.raises(TimeoutError):
        defs_server.wait_for_requests(2, timeout=0.3, path="/flags/definitions")
    clock.advance(1.5)
    defs_server.wait_for_requests(2, timeout=5, path="/flags/definitions")


def test_first_read_waits_for_the_first_load_with_a_bound(make_client):
    with FakePostHog(flag_definitions=DEFS) as server:
        server.delay_next(0.5, path="/flags/definitions")
        client = make_client(
            host=server.url, secret_key=SECRET, feature_flags_initial_load_timeout=2.0
        )
        assert client.get_feature_flag("beta-ui", "u1") is True
        assert flag_requests(server) == []
    with FakePostHog(flag_definitions=DEFS) as slow:
        slow.delay_next(2.0, path="/flags/definitions")
        slow.set_flags({"flags": {"beta-ui": {"key": "beta-ui", "enabled": True}}})
        client = make_client(
            host=slow.url, secret_key=SECRET, feature_flags_initial_load_timeout=0.2
        )
        started = time.monotonic()
        assert client.get_feature_flag("beta-ui", "u1") is True  # remote meanwhile
        assert time.monotonic() - started < 1.5


def test_close_stops_the_poller(defs_server, make_client):
    before = set(threading.enumerate())
    client = make_client(host=defs_server.url, secret_key=SECRET)
    client.get_feature_flag("beta-ui", "u1")
    [thread] = started_threads(before, "posthog_otel-flags")
    assert thread.is_alive()
    client.close(5)
    assert not thread.is_alive()


def _child_reads(client, out):
    value = client.get_feature_flag("beta-ui", "child")
    pollers = [t for t in threading.enumerate() if t.name == "posthog_otel-flags"]
    out.put((value, os.getpid(), any(t.is_alive() for t in pollers)))


def test_poller_works_after_fork(defs_server, make_client):
    client = make_client(host=defs_server.url, secret_key=SECRET)
    assert client.get_feature_flag("beta-ui", "u1") is True
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_reads, args=(client, out))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    value, pid, polling = out.get(timeout=5)
    assert value is True and pid != os.getpid()
    assert polling  # the child polls with a thread of its own
    client.reload_feature_flags()  # the parent's loader is unaffected
    assert loaded_keys(client) == ["beta-ui"]


# ---------------------------------------------------------------- cache provider


def test_provider_that_says_do_not_fetch(defs_server, make_client):
    provider = InMemoryFlagDefinitionCache(should_fetch=False, data=DEFS)
    client = make_client(
        host=defs_server.url,
        secret_key=SECRET,
        flag_definition_cache_provider=provider,
        preload_feature_flags=False,  # every fetch below is the test's
    )
    client.reload_feature_flags()
    assert loaded_keys(client) == ["beta-ui"]
    assert definition_requests(defs_server) == []
    assert provider.calls == ["should_fetch", "get"]


def test_provider_that_fetches_receives_the_data(defs_server, make_client):
    provider = InMemoryFlagDefinitionCache(should_fetch=True)
    client = make_client(
        host=defs_server.url,
        secret_key=SECRET,
        flag_definition_cache_provider=provider,
        preload_feature_flags=False,  # every fetch below is the test's
    )
    client.reload_feature_flags()
    assert provider.calls == ["should_fetch", "received"]
    assert set(provider.data) >= {"flags", "group_type_mapping", "cohorts"}
    client.close(5)
    assert provider.calls[-1] == "shutdown"


def test_async_provider(defs_server, make_client):
    class AsyncProvider(InMemoryFlagDefinitionCache):
        async def should_fetch_flag_definitions(self):  # type: ignore[override]
            await asyncio.sleep(0)
            return False

        async def get_flag_definitions(self):  # type: ignore[override]
            return DEFS

    client = make_client(
        host=defs_server.url, secret_key=SECRET, flag_definition_cache_provider=AsyncProvider()
    )
    client.reload_feature_flags()
    assert loaded_keys(client) == ["beta-ui"] and definition_requests(defs_server) == []


def test_failing_provider_never_erases_or_raises(defs_server, make_client, caplog):
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    provider = InMemoryFlagDefinitionCache(should_fetch=True)
    client = make_client(
        host=defs_server.url,
        secret_key=SECRET,
        flag_definition_cache_provider=provider,
        preload_feature_flags=False,  # every fetch below is the test's
    )
    client.reload_feature_flags()
    provider.should_fetch = False
    provider.data = RuntimeError("cache down")
    client.reload_feature_flags()
    assert loaded_keys(client) == ["beta-ui"]

    def boom():
        raise RuntimeError("lock service down")

    provider.should_fetch = boom
    client.reload_feature_flags()  # falls back to a direct fetch
    assert len(definition_requests(defs_server)) == 2
    provider.shutdown = boom  # type: ignore[method-assign]
    client.close(5)
    assert "flag definition cache" in caplog.text


# ---------------------------------------------------------------- /flags retries (HTTP-08..11)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def remote_client(defs_server, make_client, clock):
    defs_server.set_flags({"flags": {"beta-ui": {"key": "beta-ui", "enabled": True}}})

    def make(**kwargs):
        return make_client(host=defs_server.url, _clock=clock, **kwargs)

    return make


@pytest.mark.parametrize("status", [502, 504])
def test_flags_retry_on_502_and_504(defs_server, remote_client, clock, status):
    client = remote_client()
    defs_server.fail_next(1, status, path="/flags")
    assert client.get_feature_flag("beta-ui", "u1") is True
    assert len(flag_requests(defs_server)) == 2
    assert clock.sleeps == [pytest.approx(0.3)]


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_flags_do_not_retry_other_statuses(defs_server, remote_client, clock, status):
    client = remote_client()
    defs_server.fail_next(1, status, path="/flags")
    assert client.get_feature_flag("beta-ui", "u1") is None
    assert len(flag_requests(defs_server)) == 1 and clock.sleeps == []


def test_flags_retry_a_timeout(defs_server, remote_client, clock):
    client = remote_client(feature_flags_request_timeout=0.2)
    defs_server.delay_next(0.5, path="/flags")
    assert client.get_feature_flag("beta-ui", "u1") is True
    assert len(flag_requests(defs_server)) >= 1
    assert clock.sleeps == [pytest.approx(0.3)]


def test_flags_two_retries_double_the_wait(defs_server, remote_client, clock):
    client = remote_client(feature_flags_request_max_retries=2)
    defs_server.fail_next(2, 502, path="/flags")
    assert client.get_feature_flag("beta-ui", "u1") is True
    assert len(flag_requests(defs_server)) == 3
    assert clock.sleeps == [pytest.approx(0.3), pytest.approx(0.6)]


def test_flags_no_retries_when_disabled(defs_server, remote_client, clock):
    client = remote_client(feature_flags_request_max_retries=0)
    defs_server.fail_next(1, 502, path="/flags")
    assert client.get_feature_flag("beta-ui", "u1") is None
    assert len(flag_requests(defs_server)) == 1


def test_refused_connection_is_not_retried(make_client, clock):
    server = FakePostHog().start()
    url = server.url
    server.stop()
    client = make_client(host=url, _clock=clock)
    assert client.get_feature_flag("beta-ui", "u1") is None
    assert clock.sleeps == []  # a refused connection is final


def test_provider_gets_the_etag_when_it_takes_the_keyword(defs_server, make_client):
    received = []

    class WithEtag(InMemoryFlagDefinitionCache):
        def on_flag_definitions_received(self, data, etag=None):  # type: ignore[override]
            received.append(("keyword", etag))

    class WithKwargs(InMemoryFlagDefinitionCache):
        def on_flag_definitions_received(self, data, **kwargs):  # type: ignore[override]
            received.append(("kwargs", kwargs.get("etag")))

    for provider in (WithEtag(), WithKwargs(), InMemoryFlagDefinitionCache()):
        client = make_client(
            host=defs_server.url, secret_key=SECRET, flag_definition_cache_provider=provider
        )
        client.reload_feature_flags()
        assert loaded_keys(client) == ["beta-ui"]
    etag = client.flags.loader.etag  # the same payload, the same ETag
    assert received == [("keyword", etag), ("kwargs", etag)] and etag


def test_the_same_shared_object_is_not_compiled_again(defs_server, make_client):
    provider = InMemoryFlagDefinitionCache(should_fetch=False, data=DEFS)
    client = make_client(
        host=defs_server.url, secret_key=SECRET, flag_definition_cache_provider=provider
    )
    client.reload_feature_flags()
    first = client.flags.loader.definitions
    client.reload_feature_flags()
    assert client.flags.loader.definitions is first
    provider.data = dict(DEFS)  # a new object: installed
    client.reload_feature_flags()
    assert client.flags.loader.definitions is not first


def test_after_a_shared_copy_the_next_fetch_is_not_conditional(defs_server, make_client):
    # Our ETag describes what we fetched; after installing another process's copy, a 304
    # for it would keep that copy although PostHog serves something else.
    provider = InMemoryFlagDefinitionCache(should_fetch=True)
    client = make_client(
        host=defs_server.url, secret_key=SECRET, flag_definition_cache_provider=provider
    )
    client.reload_feature_flags()
    provider.should_fetch, provider.data = False, {**DEFS, "flags": [{**BETA, "key": "other"}]}
    client.reload_feature_flags()
    assert loaded_keys(client) == ["other"]
    provider.should_fetch = True
    client.reload_feature_flags()
    assert loaded_keys(client) == ["beta-ui"]
    assert "if-none-match" not in definition_requests(defs_server)[-1].headers
