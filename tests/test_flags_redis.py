"""``RedisFlagDefinitionCache`` against a real ``redis-server`` (issue #16, part 1): each
test starts its own server on a random loopback port (no persistence) and stops it.
Never a mock: leader election across processes, ``kill -9`` of a leader, a Redis
restart, Redis unreachable at startup, stale-payload fencing and a > 1 MB payload."""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from posthog_otel.testing import FakePostHog

REDIS_SERVER = shutil.which("redis-server") or next(
    (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.path.exists(p)), None
)
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server not found (Debian package redis-server; .ci/run installs it)",
)

redis = pytest.importorskip("redis")  # the [redis] extra, part of [dev]

from posthog_otel.flags.redis import RedisFlagDefinitionCache  # noqa: E402

API_KEY = "phc_test_key_0123456789"
SECRET = "phs_secret"
POLL = 0.25  # the clients' poll interval in these tests
TTL = 2.0  # the leader's lease (renewed every third of it)
ROOT = Path(__file__).resolve().parent.parent
BETA = {
    "id": 1,
    "key": "beta-ui",
    "active": True,
    "filters": {"groups": [{"rollout_percentage": 100}]},
}
DEFS = {"flags": [BETA], "group_type_mapping": {}, "cohorts": {}}
NEW = {**DEFS, "flags": [BETA, {**BETA, "id": 2, "key": "new"}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(predicate: Callable[[], Any], timeout: float = 10.0) -> float:
    """Wait for ``predicate`` (polled); the seconds it took. Fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition not met in time"
        time.sleep(0.02)
    return time.monotonic() - start


class RedisServer:
    """A real redis-server on a random loopback port, without persistence."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="posthog-otel-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *args, "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, socket_timeout=1)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
            try:
                return bool(probe.ping())
            except redis.ConnectionError:
                return False

        until(up)
        probe.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def client(self) -> Any:
        return redis.Redis(port=self.port, socket_timeout=2)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def defs_server() -> Iterator[FakePostHog]:
    with FakePostHog(flag_definitions=DEFS) as server:
        yield server


def definition_requests(server: FakePostHog) -> int:
    return sum(1 for r in server.requests if r.path == "/flags/definitions")


def keys_of(client: Any) -> list[str] | None:
    definitions = client.flags.loader.definitions
    return None if definitions is None else sorted(definitions.flags)


@pytest.fixture
def fleet(make_client, defs_server):
    """Build a client sharing definitions through ``url``; returns (client, provider)."""

    def make(url: str, **options: Any) -> tuple[Any, RedisFlagDefinitionCache]:
        options.setdefault("lock_ttl", TTL)
        poll = options.pop("poll", POLL)
        provider = RedisFlagDefinitionCache(url, namespace="test", **options)
        client = make_client(
            host=defs_server.url,
            secret_key=SECRET,
            feature_flags_poll_interval=poll,
            flag_definition_cache_provider=provider,
        )
        client.flags.definitions(wait=False)  # start polling
        return client, provider

    return make


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from posthog_otel import Client
    from posthog_otel.flags.redis import RedisFlagDefinitionCache

    host, url, poll, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    provider = RedisFlagDefinitionCache(url, namespace="test", lock_ttl=ttl)
    client = Client("phc_test_key_0123456789", host=host, secret_key="phs_secret",
                    feature_flags_poll_interval=poll, flag_definition_cache_provider=provider)
    client.flags.definitions(wait=False)
    last = None
    while True:
        loaded = client.flags.loader.definitions
        state = [provider.is_leader, None if loaded is None else sorted(loaded.flags)]
        if state != last:
            print(json.dumps(state), flush=True)
            last = state
        time.sleep(0.02)
    """
)


class Child:
    """A client in another process; reports (is_leader, loaded flag keys) on stdout."""

    def __init__(self, host: str, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, host, url, str(POLL), str(TTL)],
            stdout=subprocess.PIPE,
            env=env,
        )
        self.state: list[Any] = [False, None]
        self._lines: queue.Queue[list[Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))

    def current(self) -> list[Any]:
        while not self._lines.empty():
            self.state = self._lines.get_nowait()
        return self.state

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def children() -> Iterator[Callable[[str, str], Child]]:
    started: list[Child] = []

    def start(host: str, url: str) -> Child:
        child = Child(host, url)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


# ---------------------------------------------------------------- tests


def test_one_process_fetches_for_the_fleet_and_the_others_read_its_copy(
    redis_server, defs_server, fleet, children
):
    child = children(defs_server.url, redis_server.url)
    members = [fleet(redis_server.url) for _ in range(3)]
    start = time.monotonic()
    until(lambda: all(keys_of(c) == ["beta-ui"] for c, _ in members))
    until(lambda: child.current()[1] == ["beta-ui"])
    defs_server.set_flag_definitions(NEW)
    everyone = lambda: all(keys_of(c) == ["beta-ui", "new"] for c, _ in members)  # noqa: E731
    until(lambda: everyone() and child.current()[1] == ["beta-ui", "new"])
    # Exactly one leader among the four processes.
    until(lambda: sum(p.is_leader for _, p in members) + child.current()[0] == 1)
    until(lambda: time.monotonic() - start > 2.0)  # let several poll intervals pass
    elapsed, requests = time.monotonic() - start, definition_requests(defs_server)
    one_process = elapsed / POLL + 1
    # One process's rate (4 independent processes would make ~4x as many requests).
    assert requests <= one_process * 1.5 + 2, (requests, one_process)


def test_a_leader_killed_with_sigkill_is_replaced_within_one_poll_interval(
    redis_server, defs_server, fleet, children
):
    leader = children(defs_server.url, redis_server.url)
    until(lambda: leader.current() == [True, ["beta-ui"]], timeout=20)
    members = [fleet(redis_server.url) for _ in range(2)]
    until(lambda: all(keys_of(c) == ["beta-ui"] for c, _ in members))
    assert not any(p.is_leader for _, p in members)
    leader.kill()
    defs_server.set_flag_definitions(NEW)
    took = until(lambda: all(keys_of(c) == ["beta-ui", "new"] for c, _ in members))
    # The lease lapses after TTL; the next poll elsewhere takes over (generous bound).
    assert took < 3 * (TTL + POLL), took
    assert sum(p.is_leader for _, p in members) == 1


def test_redis_restart_keeps_definitions_evaluating_then_recovers(
    redis_server, defs_server, fleet, warnings_log
):
    members = [fleet(redis_server.url, fallback_after=30) for _ in range(2)]
    until(lambda: all(keys_of(c) == ["beta-ui"] for c, _ in members))
    redis_server.stop()
    until(lambda: "unreachable" in warnings_log.text)
    requests = definition_requests(defs_server)
    until(lambda: "unreachable" in warnings_log.text and len(warnings_log.records) >= 2)
    for client, _ in members:  # the last good set keeps evaluating
        assert client.get_feature_flag("beta-ui", "u1", only_evaluate_locally=True) is True
    redis_server.start()  # same port, empty: the new leader shares its copy again
    until(lambda: redis_server.client().hget("posthog_otel:flags:test:defs", "version"))
    assert definition_requests(defs_server) >= requests
    defs_server.set_flag_definitions(NEW)
    until(lambda: all(keys_of(c) == ["beta-ui", "new"] for c, _ in members))


def test_redis_down_for_long_falls_back_to_fetching_with_one_warning(
    redis_server, defs_server, fleet, warnings_log
):
    members = [fleet(redis_server.url, fallback_after=0.5) for _ in range(2)]
    until(lambda: all(keys_of(c) == ["beta-ui"] for c, _ in members))
    redis_server.stop()
    defs_server.set_flag_definitions(NEW)
    # Every process, the follower too, fetches itself after 0.5-0.75 s (+ a poll).
    took = until(lambda: all(keys_of(c) == ["beta-ui", "new"] for c, _ in members))
    assert took < 3 * (0.75 + POLL) + 2, took
    until(lambda: definition_requests(defs_server) >= 8)
    warnings = [r.getMessage() for r in warnings_log.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 2, warnings  # one per process and outage


def test_redis_unreachable_at_startup_fetches_from_posthog_and_warns_once(
    defs_server, fleet, warnings_log
):
    client, provider = fleet(f"redis://127.0.0.1:{_free_port()}/0", fallback_after=0.2)
    until(lambda: keys_of(client) == ["beta-ui"])
    until(lambda: definition_requests(defs_server) >= 4)  # keeps polling PostHog itself
    assert not provider.is_leader
    (warning,) = [r.getMessage() for r in warnings_log.records]
    assert "unreachable" in warning and "fetching them from PostHog directly" in warning


def test_an_older_leader_never_overwrites_a_newer_copy(redis_server):
    url = redis_server.url
    old, new, reader = (RedisFlagDefinitionCache(url, namespace="t", lock_ttl=30) for _ in "abc")
    try:
        assert old.should_fetch_flag_definitions() and old.token
        old.on_flag_definitions_received(DEFS, etag='"a"')
        assert reader.get_flag_definitions() == DEFS
        # The old leader stalls; its lease lapses and another process takes over.
        redis_server.client().delete(old.lock_key)
        assert new.should_fetch_flag_definitions() and new.token > old.token
        new.on_flag_definitions_received(NEW, etag='"b"')
        # The stalled leader wakes with what it fetched before: refused.
        old.on_flag_definitions_received(DEFS, etag='"a"')
        assert not old.store(DEFS, '"a"', token=old.token, seq=99)
        assert not new.store(DEFS, '"a"', token=new.token, seq=1)  # same token, older write
        stored = redis_server.client().hmget(new.defs_key, ["etag", "version"])
        assert stored == [b'"b"', f"{new.token}:1".encode()]
        assert reader.get_flag_definitions() == NEW
        assert not old.should_fetch_flag_definitions() and not old.is_leader
    finally:
        for provider in (old, new, reader):
            provider.shutdown()


def test_definitions_larger_than_one_megabyte_are_shared(redis_server, defs_server, fleet):
    values = [f"customer-{i:06d}@example.com" for i in range(200)]
    flags = [
        {
            "id": i,
            "key": f"flag-{i}",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {"key": "email", "operator": "exact", "value": values, "type": "person"}
                        ],
                        "rollout_percentage": 100,
                    }
                ]
            },
        }
        for i in range(250)
    ]
    big = {"flags": flags, "group_type_mapping": {}, "cohorts": {}}
    assert len(json.dumps(big)) > 1_000_000
    defs_server.set_flag_definitions(big)
    # A long poll, lease and wait: each process loads once, and on a loaded machine
    # fetching and parsing 1 MB must not look like a dead leader or a second poll (what
    # is tested here is the size, not the timing).
    members = [fleet(redis_server.url, lock_ttl=30, wait_for_shared=15, poll=60) for _ in range(2)]
    until(lambda: all(c.flags.loader.definitions is not None for c, _ in members), 20)
    until(lambda: all(len(keys_of(c) or []) == 250 for c, _ in members), 20)
    assert definition_requests(defs_server) == 1
    payload = redis_server.client().hget("posthog_otel:flags:test:defs", "payload")
    assert len(payload) > 1_000_000
    for client, _ in members:
        value = client.get_feature_flag(
            "flag-7",
            "u1",
            person_properties={"email": values[42]},
            only_evaluate_locally=True,
        )
        assert value is True


def test_redis_url_from_the_environment(redis_server, monkeypatch):
    monkeypatch.setenv("POSTHOG_REDIS_URL", redis_server.url)
    provider = RedisFlagDefinitionCache(namespace="env")
    try:
        assert provider.should_fetch_flag_definitions() and provider.is_leader
    finally:
        provider.shutdown()
    monkeypatch.delenv("POSTHOG_REDIS_URL")
    with pytest.raises(ValueError, match="POSTHOG_REDIS_URL"):
        RedisFlagDefinitionCache()


def test_a_leader_that_shuts_down_hands_the_lease_over_at_once(redis_server):
    first, second = (RedisFlagDefinitionCache(redis_server.url, namespace="h") for _ in "ab")
    try:
        assert first.should_fetch_flag_definitions()
        assert not second.should_fetch_flag_definitions()
        first.shutdown()
        assert second.should_fetch_flag_definitions()  # no wait for the 10 s lease
    finally:
        second.shutdown()


def test_quiet_when_everything_works(redis_server, fleet, warnings_log):
    client, _ = fleet(redis_server.url)
    until(lambda: keys_of(client) == ["beta-ui"])
    assert [r for r in warnings_log.records if r.levelno >= logging.WARNING] == []


def test_a_new_leader_with_the_same_etag_moves_the_fence_but_not_the_version(redis_server):
    url = redis_server.url
    old, new = (RedisFlagDefinitionCache(url, namespace="e", lock_ttl=30) for _ in "ab")
    try:
        assert old.should_fetch_flag_definitions()
        old.on_flag_definitions_received(DEFS, etag='"a"')
        version = redis_server.client().hget(old.defs_key, "version")
        redis_server.client().delete(old.lock_key)
        assert new.should_fetch_flag_definitions()
        new.on_flag_definitions_received(DEFS, etag='"a"')  # its first fetch after takeover
        stored = redis_server.client().hmget(new.defs_key, ["version", "fence"])
        assert stored == [version, str(new.token).encode()]  # readers download nothing
        assert not old.store(NEW, '"z"', token=old.token, seq=5)  # still fenced off
    finally:
        old.shutdown()
        new.shutdown()


def test_a_forked_child_is_not_its_parents_leader(redis_server):
    import multiprocessing

    provider = RedisFlagDefinitionCache(redis_server.url, namespace="f", lock_ttl=30)
    try:
        assert provider.should_fetch_flag_definitions()
        provider.on_flag_definitions_received(DEFS, etag='"a"')
        results: Any = multiprocessing.get_context("fork").Queue()

        def child() -> None:
            fetch = provider.should_fetch_flag_definitions()
            results.put((provider.is_leader, fetch, provider.get_flag_definitions() == DEFS))

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(20)
        assert process.exitcode == 0
        assert results.get(timeout=5) == (False, False, True)
        assert provider.is_leader and provider.should_fetch_flag_definitions()
    finally:
        provider.shutdown()


def test_the_lease_is_renewed_between_polls_longer_than_it(redis_server):
    # A 30 s poll interval with a 10 s lease: the leader's thread keeps it, so no other
    # process takes over while the leader is alive (and a dead one is replaced sooner).
    leader, other = (
        RedisFlagDefinitionCache(redis_server.url, namespace="r", lock_ttl=0.3) for _ in "ab"
    )
    try:
        assert leader.should_fetch_flag_definitions()
        token = leader.token
        start = time.monotonic()
        until(lambda: time.monotonic() - start > 1.2)  # four leases long
        assert not other.should_fetch_flag_definitions()
        assert leader.should_fetch_flag_definitions() and leader.token == token
    finally:
        leader.shutdown()
        other.shutdown()


@pytest.mark.parametrize("lock", [b"garbage", b"7:a-process-of-another-version"])
def test_a_lock_that_can_never_lapse_does_not_wedge_the_fleet(redis_server, lock, warnings_log):
    """A lock key another tool or version wrote without a TTL (or not in our format)
    would keep every process a follower for ever, none fetching: it is taken over."""
    provider = RedisFlagDefinitionCache(redis_server.url, namespace="w", lock_ttl=30)
    try:
        redis_server.client().set(provider.lock_key, lock)  # no TTL
        assert provider.should_fetch_flag_definitions() and provider.is_leader
        assert redis_server.client().pttl(provider.lock_key) > 0
    finally:
        provider.shutdown()
    assert [r for r in warnings_log.records if r.levelno >= logging.WARNING] == []


def test_a_fencing_counter_that_is_not_a_number_is_reset_not_taken_for_redis_down(
    redis_server, warnings_log
):
    provider = RedisFlagDefinitionCache(redis_server.url, namespace="g", lock_ttl=30)
    try:
        redis_server.client().set(provider.fence_key, b"not a number")
        assert provider.should_fetch_flag_definitions() and provider.is_leader
        provider.on_flag_definitions_received(DEFS, etag='"a"')
        reader = RedisFlagDefinitionCache(redis_server.url, namespace="g")
        assert reader.get_flag_definitions() == DEFS
        reader.shutdown()
    finally:
        provider.shutdown()
    assert [r for r in warnings_log.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    "payload",
    [b"\xff{not json", b'{"flags": "x"}', b"[1, 2]", b"[" * 100_000 + b"]" * 100_000, "huge"],
    ids=["garbage", "format", "list", "nested", "huge"],
)
def test_an_unreadable_shared_copy_keeps_the_last_good_one_and_warns_once(
    redis_server, payload, warnings_log, monkeypatch
):
    """Garbage, another version's format or a copy too large to read in Redis: the
    followers keep their last good definitions, warn once for that copy (not at every
    poll) and never download a too-large copy."""
    from posthog_otel.flags import redis as module

    leader, reader = (RedisFlagDefinitionCache(redis_server.url, namespace="h") for _ in "ab")
    try:
        assert leader.should_fetch_flag_definitions()
        leader.on_flag_definitions_received(DEFS, etag='"a"')
        assert reader.get_flag_definitions() == DEFS
        if payload == "huge":
            monkeypatch.setattr(module, "MAX_SHARED_BYTES", 1024)
            payload = json.dumps({**DEFS, "pad": "x" * 4096}).encode()
        redis_server.client().hset(leader.defs_key, mapping={"payload": payload, "version": "z"})
        for _ in range(3):
            assert reader.get_flag_definitions() == DEFS
    finally:
        leader.shutdown()
        reader.shutdown()
    warnings = [r.getMessage() for r in warnings_log.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "keeping the last good set" in warnings[0]


@pytest.mark.parametrize("stored_fence", [str(int(time.time() * 1000) + 10**9), "9" * 30])
def test_a_new_leaders_token_is_above_the_shared_copys_fence(redis_server, stored_fence):
    """The counter lost (evicted under maxmemory, or Redis restarted from an older
    snapshot) while the shared copy stayed, its fence ahead of the clock (the clock went
    back) or not a number a token can pass: a new leader must still be able to share,
    or every follower would keep stale definitions for ever."""
    url = redis_server.url
    leader, reader = (RedisFlagDefinitionCache(url, namespace="k", lock_ttl=30) for _ in "ab")
    try:
        client = redis_server.client()
        client.hset(
            leader.defs_key,
            mapping={"payload": json.dumps(DEFS), "version": "old", "fence": stored_fence},
        )
        assert reader.get_flag_definitions() == DEFS
        client.delete(leader.fence_key)
        assert leader.should_fetch_flag_definitions() and leader.is_leader
        leader.on_flag_definitions_received(NEW, etag='"n"')
        assert reader.get_flag_definitions() == NEW
    finally:
        leader.shutdown()
        reader.shutdown()
