"""Flag hardening (issue #9 items 3, 6, 13, 14): hostile regexes, a slow first load,
overrides scoped to the identity context, a bounded result cache."""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from posthog_otel import context, get_distinct_id
from posthog_otel.flags import _regex
from posthog_otel.flags._errors import Inconclusive
from posthog_otel.flags._remote import RESULT_CACHE_MAX_ENTRIES, ResultCache
from posthog_otel.flags._results import FlagResult
from posthog_otel.middleware import PostHogWSGIMiddleware
from posthog_otel.testing import FakeClock, FakePostHog

from .test_flags_loading import DEFS, SECRET
from .test_fork_safety import REMOTE_ONLY_FLAG

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


# ---------------------------------------------------------------- item 13: overrides


ADMIN_DEFS = {
    "flags": [
        {
            "id": 10,
            "key": "admin-panel",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {"key": "role", "type": "person", "operator": "exact", "value": "admin"}
                        ],
                        "rollout_percentage": 100,
                    }
                ]
            },
        },
        {
            "id": 11,
            "key": "pro-admin",
            "active": True,
            "filters": {
                "groups": [
                    {
                        "properties": [
                            {
                                "key": "role",
                                "type": "person",
                                "operator": "exact",
                                "value": "admin",
                            },
                            {"key": "plan", "type": "person", "operator": "exact", "value": "pro"},
                        ],
                        "rollout_percentage": 100,
                    }
                ]
            },
        },
        REMOTE_ONLY_FLAG,
    ],
    "group_type_mapping": {},
    "cohorts": {},
}


def test_overrides_set_in_a_request_end_with_it(make_client):
    with FakePostHog(
        flag_definitions=ADMIN_DEFS,
        flags={"flags": {"remote-flag": {"key": "remote-flag", "enabled": True}}},
    ) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        client.set_person_properties_for_flags({"plan": "pro"})  # client-level

        def app(environ, start_response):
            if environ["PATH_INFO"] == "/login":
                client.set_person_properties_for_flags(
                    {"role": "admin", "email": "alice@example.com"}
                )
            answer = {
                "who": get_distinct_id(),
                "thread": threading.get_ident(),
                "admin": client.get_feature_flag("admin-panel", only_evaluate_locally=True),
                "pro_admin": client.get_feature_flag("pro-admin", only_evaluate_locally=True),
                "remote": client.get_feature_flag("remote-flag"),
            }
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(answer).encode()]

        wsgi = PostHogWSGIMiddleware(app)

        def call(who: str, path: str = "/") -> dict:
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path,
                "HTTP_X_POSTHOG_DISTINCT_ID": who,
                "wsgi.url_scheme": "http",
                "SERVER_NAME": "example.test",
            }
            body = wsgi(environ, lambda status, headers: None)
            return json.loads(b"".join(body))

        with ThreadPoolExecutor(max_workers=2) as pool:
            alice = pool.submit(call, "alice", "/login").result(10)
            later = [pool.submit(call, who).result(10) for who in ("bob", "bob", "alice")]
            together = [f.result(10) for f in [pool.submit(call, "bob") for _ in range(6)]]

        assert alice["admin"] is True
        assert alice["pro_admin"] is True  # merged over the client-level plan=pro
        assert alice["remote"] is True
        assert any(r["thread"] == alice["thread"] for r in later)  # the same worker thread
        for answer in later + together:
            # alice's role ended with her request: no role known, so no local answer
            assert answer["admin"] is None, answer
            assert answer["pro_admin"] is None
            assert answer["remote"] is True
        bob_requests = [
            r for r in server.requests if r.path == "/flags" and r.json["distinct_id"] == "bob"
        ]
        assert len(bob_requests) == 8
        for request in bob_requests:
            assert "alice@example.com" not in request.body.decode()
            assert request.json["person_properties"] == {"plan": "pro"}
        (alice_request,) = [
            r
            for r in server.requests
            if r.path == "/flags" and "alice@example.com" in r.body.decode()
        ]
        assert alice_request.json["person_properties"]["plan"] == "pro"


def test_overrides_set_in_a_request_hold_while_its_body_streams(make_client):
    """A streamed WSGI body runs in the request's own context: overrides set while the
    app ran still apply to flag reads made as the body is produced."""
    with FakePostHog(flag_definitions=ADMIN_DEFS) as server:
        client = make_client(host=server.url, secret_key=SECRET)

        def app(environ, start_response):
            client.set_person_properties_for_flags({"role": "admin"})
            start_response("200 OK", [("Content-Type", "text/plain")])

            def body():
                for _ in range(2):
                    admin = client.get_feature_flag("admin-panel", only_evaluate_locally=True)
                    yield f"{get_distinct_id()}:{admin};".encode()

            return body()

        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "HTTP_X_POSTHOG_DISTINCT_ID": "alice",
            "wsgi.url_scheme": "http",
            "SERVER_NAME": "example.test",
        }
        chunks = PostHogWSGIMiddleware(app)(environ, lambda status, headers: None)
        assert b"".join(chunks) == b"alice:True;alice:True;"
        assert get_distinct_id() is None  # nothing leaked out of the request


def test_overrides_in_nested_contexts_and_resets(make_client):
    with FakePostHog(flag_definitions=ADMIN_DEFS) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        client.set_person_properties_for_flags({"plan": "pro"})
        with context(distinct_id="alice"):
            client.set_person_properties_for_flags({"role": "admin"})
            with context(session_id="s1"):  # inherits alice and her overrides
                assert client.get_feature_flag("pro-admin", only_evaluate_locally=True) is True
                client.set_person_properties_for_flags({"plan": "free"})
                assert client.get_feature_flag("pro-admin", only_evaluate_locally=True) is False
            assert client.get_feature_flag("pro-admin", only_evaluate_locally=True) is True
            client.reset_person_properties_for_flags()  # this context's only
            assert client.get_feature_flag("admin-panel", only_evaluate_locally=True) is None
            client.set_group_properties_for_flags({"company": {"size": 5}})
            client.reset_group_properties_for_flags()
        with context(distinct_id="bob"):
            assert client.get_feature_flag("admin-panel", only_evaluate_locally=True) is None
        assert client.get_feature_flag("admin-panel", "carol", person_properties={}) is None


def test_bad_override_arguments_are_ignored_counted_and_warned_once(make_client, caplog):
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    with FakePostHog(flag_definitions=ADMIN_DEFS) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        client.set_person_properties_for_flags({"role": "admin"})

        class Unreadable(dict):
            def keys(self):
                raise RuntimeError("no")

            def __iter__(self):
                raise RuntimeError("no")

        for bad in (None, "role=admin", ["role"], 5, Unreadable(role="x")):
            client.set_person_properties_for_flags(bad)  # type: ignore[arg-type]
            client.set_group_properties_for_flags(bad)  # type: ignore[arg-type]
        client.set_group_properties_for_flags({"company": None, "team": {"size": 3}})
        assert client.stats.corrected["invalid_flag_properties"] == 11
        warnings = [r for r in caplog.records if "properties_for_flags" in r.getMessage()]
        assert len(warnings) == 1
        # What was set before is intact.
        assert client.get_feature_flag("admin-panel", "u1", only_evaluate_locally=True) is True


# ---------------------------------------------------------------- item 3: ReDoS


def _regex_flag(key: str, pattern: str) -> dict:
    return {
        "id": 20,
        "key": key,
        "active": True,
        "filters": {
            "groups": [
                {
                    "properties": [
                        {"key": "name", "type": "person", "operator": "regex", "value": pattern}
                    ],
                    "rollout_percentage": 100,
                }
            ]
        },
    }


HOSTILE = [
    (r"^(\w|\w\w)*$", "a" * 37 + "!"),  # 38 characters: 4.8 s with re
    (r"^(a|a)*$", "a" * 28 + "!"),  # 22.8 s with re
]


@pytest.mark.parametrize(("pattern", "value"), HOSTILE)
def test_a_catastrophic_regex_is_inconclusive_within_its_budget(make_client, pattern, value):
    definitions = {"flags": [_regex_flag("hostile", pattern)], "group_type_mapping": {}}
    with FakePostHog(
        flag_definitions=definitions,
        flags={"flags": {"hostile": {"key": "hostile", "enabled": True}}},
    ) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        assert client.get_feature_flag("hostile", "u0", person_properties={"name": "a"}) is True
        assert _flag_requests(server) == []  # a harmless value: decided locally
        timeouts = _regex.timeouts()
        started = time.monotonic()
        value_read = client.get_feature_flag("hostile", "u1", person_properties={"name": value})
        local_only = client.get_feature_flag(
            "hostile", "u2", person_properties={"name": value}, only_evaluate_locally=True
        )
        elapsed = time.monotonic() - started
        assert value_read is True  # PostHog decided
        assert local_only is None  # inconclusive, and no request
        assert len(_flag_requests(server)) == 1
        assert elapsed < 2.0, elapsed
        assert _regex.timeouts() > timeouts


def test_other_threads_run_while_a_regex_spends_its_budget(monkeypatch):
    """The match releases the GIL: a counting thread makes progress during it."""
    monkeypatch.setattr(_regex, "MATCH_BUDGET", 0.6)  # long enough to look inside
    compiled = _regex.compile_regex(r"^(a|a)*$")
    assert compiled is not None
    ticks: list[float] = []
    stop = threading.Event()

    def count() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 1000 == 0:
                ticks.append(time.monotonic())

    counter = threading.Thread(target=count)
    counter.start()
    try:
        started = time.monotonic()
        with pytest.raises(Inconclusive):
            compiled.search("a" * 28 + "!")
        ended = time.monotonic()
    finally:
        stop.set()
        counter.join(10)
    assert ended - started < 3.0
    # Progress in the middle of the match, not only around it.
    middle = [t for t in ticks if started + 0.15 < t < ended - 0.15]
    assert len(middle) >= 10, (len(middle), ended - started)


def _flag_requests(server: FakePostHog) -> list:
    return [r for r in server.requests if r.path == "/flags"]


# Building blocks of the patterns the guard accepts, and of the values they meet.
_ATOMS = [
    "a", "b", "ab", ".", r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", r"\.", r"\x41", r"\-",
    "[a-c]", "[^a]", r"[\w-]", r"[\d.]", "[ab]", r"[^\s]", "[é-ü]", "é", " ", r"\t", r"\n",
]  # fmt: skip
_QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "*?", "+?"]
_CHARACTERS = "aabbc1 9_-.\t\nAéüß٣²Ⅳ\u0301\u00a0\u2028"


def _generated_pattern(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.25:
            inner = "|".join(
                rng.choice(_ATOMS) + rng.choice([*_QUANTIFIERS[:3], "?"])
                for _ in range(rng.randint(1, 3))
            )
            group = rng.choice(["(", "(?:"]) + inner + ")"
            parts.append(group + rng.choice(["", "*", "+", "?", "{1,2}"]))
        else:
            parts.append(rng.choice(_ATOMS) + rng.choice(_QUANTIFIERS))
        if rng.random() < 0.1:
            parts.append("|")
    pattern = "".join(parts).strip("|") or "a"
    return rng.choice(["", "", "^"]) + pattern + rng.choice(["", "", "$"])


def test_regex_version0_answers_as_re_on_what_the_guard_accepts():
    """``regex`` in VERSION0 mode runs the accepted patterns; ``re`` is the reference
    (posthog 7.91.1 evaluates with ``re``): same match, same span, on many pairs."""
    rng = random.Random(9)
    compared = disagreements = deferred = 0
    first = None
    patterns = 0
    while patterns < 2_500:
        pattern = _generated_pattern(rng)
        try:
            compiled = _regex.compile_regex(pattern)
        except Inconclusive:
            continue  # the guard leaves it to the server
        if compiled is None:
            continue
        patterns += 1
        reference = re.compile(compiled.regex.pattern)
        for _ in range(12):
            value = "".join(rng.choice(_CHARACTERS) for _ in range(rng.randint(0, 10)))
            try:
                found = compiled.search(value)  # the production path, value guard included
            except Inconclusive:
                deferred += 1
                continue
            expected = reference.search(value)
            actual = compiled.regex.search(value)
            compared += 1
            spans = (expected and expected.span(), actual and actual.span())
            if found != (expected is not None) or spans[0] != spans[1]:
                disagreements += 1
                first = first or (pattern, value, found, spans)
    assert compared >= 20_000 and deferred < compared
    assert disagreements == 0, (disagreements, first)


def test_regex_is_imported_only_when_a_regex_filter_is_compiled():
    script = (
        "import sys\n"
        "from posthog_otel import Client\n"
        "from posthog_otel.flags._evaluator import Definitions\n"
        "Client('phc_x', host='http://127.0.0.1:9', flush_interval=60).close(0)\n"
        "plain = {'key': 'a', 'operator': 'exact', 'value': 'x'}\n"
        "def defs(f):\n"
        "    group = {'properties': [f], 'rollout_percentage': 100}\n"
        "    flag = {'id': 1, 'key': 'k', 'active': True, 'filters': {'groups': [group]}}\n"
        "    return Definitions({'flags': [flag]})\n"
        "defs(plain)\n"
        "before = 'regex' in sys.modules\n"
        "defs({**plain, 'operator': 'regex'})\n"
        "print(before, 'regex' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.split() == [b"False", b"True"]


def test_send_feature_flags_uses_the_overrides_of_the_events_context(server, make_client):
    """The flags worker asks ``/flags`` on its own thread, outside the identity context:
    the event's request must still carry the overrides in force where it was captured,
    and an event captured elsewhere must not get them (nor share their answer)."""
    client = make_client()  # no secret key: send_feature_flags goes through /flags
    client.set_person_properties_for_flags({"plan": "pro"})  # client-level
    with context(distinct_id="alice"):
        client.set_person_properties_for_flags({"role": "admin"})
        client.capture("in_request", send_feature_flags=True)
    client.capture("outside", "alice", send_feature_flags=True)
    assert client.flush(5)
    bodies = [json.loads(r.body) for r in server.requests if r.path == "/flags"]
    assert [b["person_properties"] for b in bodies] == [
        {"plan": "pro", "role": "admin"},
        {"plan": "pro"},
    ]


def test_send_feature_flags_sends_the_device_id_of_the_events_context(server, make_client):
    """``context(device_id=...)``: the flags worker's ``/flags`` request (made on its own
    thread, outside the context) carries the device id of the context the event was
    captured in, and an answer for one device is not shared with another."""
    client = make_client()  # no secret key: send_feature_flags goes through /flags
    with context(distinct_id="alice", device_id="device-1"):
        client.capture("first", send_feature_flags=True)
    with context(distinct_id="alice", device_id="device-2"):
        client.capture("second", send_feature_flags=True)
    assert client.flush(5)
    bodies = [json.loads(r.body) for r in server.requests if r.path == "/flags"]
    assert [b.get("device_id") for b in bodies] == ["device-1", "device-2"]
