"""Flag hardening (issue #9 items 3, 6, 13, 14): hostile regexes, a slow first load,
overrides scoped to the identity context, a bounded result cache."""

from __future__ import annotations

import time

from posthog_otel.flags._remote import RESULT_CACHE_MAX_ENTRIES, ResultCache
from posthog_otel.flags._results import FlagResult
from posthog_otel.testing import FakeClock, FakePostHog

# ---------------------------------------------------------------- item 14: result cache


def _result(key: str) -> dict[str, FlagResult]:
    return {key: FlagResult(key=key, enabled=True)}


def test_result_cache_is_bounded_and_puts_do_not_copy_it():
    cache = ResultCache(60.0, FakeClock())
    started = time.monotonic()
    for i in range(3 * RESULT_CACHE_MAX_ENTRIES):
        cache.put(b"person-%d" % i, _result("f"))
    elapsed = time.monotonic() - started
    assert len(cache) == RESULT_CACHE_MAX_ENTRIES == 10_000
    # The newest are kept, the oldest forgotten.
    assert cache.get(b"person-%d" % (3 * RESULT_CACHE_MAX_ENTRIES - 1), "f") is not None
    assert cache.get(b"person-0", "f") is None
    # O(1) puts: a copy of a full cache per put took ~1-9 ms each (minutes here).
    assert elapsed < 5.0, elapsed


def test_result_cache_forgets_the_least_recently_used():
    cache = ResultCache(60.0, FakeClock(), max_entries=3)
    for name in (b"a", b"b", b"c"):
        cache.put(name, _result("f"))
    assert cache.get(b"a", "f") is not None  # a is now the most recently used
    cache.put(b"d", _result("f"))
    assert cache.get(b"b", "f") is None
    assert all(cache.get(name, "f") is not None for name in (b"a", b"c", b"d"))
    cache.put(b"c", _result("g"))  # a put merges and refreshes c
    cache.put(b"e", _result("f"))
    assert cache.get(b"a", "f") is None
    assert cache.get(b"c", "f") is not None and cache.get(b"c", "g") is not None


def test_result_cache_entries_expire_with_the_clock():
    clock = FakeClock()
    cache = ResultCache(10.0, clock)
    cache.put(b"alice", _result("f"))
    clock.advance(9.0)
    assert cache.get(b"alice", "f") is not None
    clock.advance(2.0)
    assert cache.get(b"alice", "f") is None
    assert len(cache) == 0  # an expired entry is dropped when seen
    cache.put(b"alice", _result("g"))  # an expired entry is not merged into
    assert cache.get(b"alice", "f") is None and cache.get(b"alice", "g") is not None


# ---------------------------------------------------------------- item 6: slow first load

SECRET = "phs_secret"
BETA = {
    "id": 1,
    "key": "beta-ui",
    "active": True,
    "filters": {"groups": [{"rollout_percentage": 100}]},
}
DEFS = {"flags": [BETA], "group_type_mapping": {}, "cohorts": {}}
REMOTE_BETA = {"flags": {"beta-ui": {"key": "beta-ui", "enabled": True}}}


def test_only_the_first_read_waits_for_a_slow_first_load(make_client):
    with FakePostHog(flag_definitions=DEFS, flags=REMOTE_BETA) as server:
        server.delay_next(5.0, path="/flags/definitions")
        client = make_client(
            host=server.url, secret_key=SECRET, feature_flags_initial_load_timeout=2.0
        )
        started = time.monotonic()
        assert client.get_feature_flag("beta-ui", "u1") is True  # remote, after the wait
        first = time.monotonic() - started
        started = time.monotonic()
        assert client.get_feature_flag("beta-ui", "u2") is True
        assert client.get_feature_flag("beta-ui", "u3") is True
        later = time.monotonic() - started
    assert first >= 1.5  # the first read did wait for the load (bounded)
    assert later < 1.0, later  # the next two did not wait again (each waited 2 s before)
