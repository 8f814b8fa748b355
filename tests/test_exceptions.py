"""``client.capture_exception`` and the ``$exception`` event shape (issue #12): the
acceptance scenarios of Capture Exception (CEX, sdk-contracts §2.6) and Exception Event
Metadata (EEM, §2.7) one by one, against the fake server (which validates
``$exception`` events like PostHog)."""

from __future__ import annotations

import json
import sys
import threading
import tracemalloc

import pytest

from posthog_otel import Client, context
from posthog_otel._exc_event import MAX_EXCEPTION_BYTES, exception_properties
from posthog_otel._exc_snapshot import Boundary, ExcEntry, snapshot_exception

# ---------------------------------------------------------------------- helpers


def _one(server, client):
    assert client.flush(5)
    events = [e for e in server.events if e["event"] == "$exception"]
    assert len(events) == 1, server.event_names()
    return events[0]


def _raise(exc):
    raise exc


class WrapperError(Exception):
    pass


class RootError(Exception):
    pass


def main():
    return handler()


def handler():
    return boom()


def boom():
    raise TypeError("boom")


def _caught(fn):
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


# ---------------------------------------------------------------------- CEX (§2.6)


def test_cex_type_error_boom_with_stack(server, make_client):
    client = make_client()
    try:
        main()
    except TypeError:
        uuid = client.capture_exception()  # no argument: the exception being handled
    event = _one(server, client)
    props = event["properties"]
    assert event["uuid"] == uuid
    assert props["$exception_type"] == "TypeError"
    assert props["$exception_message"] == "boom"
    frames = props["$exception_list"][0]["stacktrace"]["frames"]
    assert frames and all(f["platform"] == "python" for f in frames)


def test_cex_caller_properties_pass_through(server, make_client):
    client = make_client()
    client.capture_exception(_caught(main), "u1", {"handled": True, "area": "checkout"})
    props = _one(server, client)["properties"]
    assert props["handled"] is True
    assert props["area"] == "checkout"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("something broke", "something broke"),
        (42, "42"),
        ({"code": 7, "reason": "x"}, "Non-exception value captured with keys: code, reason"),
        (ValueError, "ValueError (an exception class, not an instance)"),
    ],
)
def test_cex_non_exception_value_gives_a_normalized_event(server, make_client, value, message):
    client = make_client()
    assert client.capture_exception(value, "u1") is not None
    props = _one(server, client)["properties"]
    entry = props["$exception_list"][0]
    assert entry["type"] == "Error"
    assert entry["value"] == message == props["$exception_message"]
    assert entry["mechanism"]["synthetic"] is True  # EEM-08: converted value
    # The synthesized stack is the caller's, ending in this test (no frame of ours).
    frames = entry["stacktrace"]["frames"]
    assert frames[-1]["function"] == "test_cex_non_exception_value_gives_a_normalized_event"
    assert not any(f.get("module", "").startswith("posthog_otel") for f in frames)


def test_cex_frames_are_outermost_first(server, make_client):
    client = make_client()
    client.capture_exception(_caught(main), "u1")
    frames = _one(server, client)["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    functions = [f["function"] for f in frames]
    assert functions == ["_caught", "main", "handler", "boom"]
    assert functions[functions.index("main") :][0] == "main" and functions[-1] == "boom"


def test_cex_wrapper_first_root_cause_last(server, make_client):
    def wrapped():
        try:
            _raise(RootError("db down"))
        except RootError as exc:
            raise WrapperError("checkout failed") from exc

    client = make_client()
    client.capture_exception(_caught(wrapped), "u1")
    exc_list = _one(server, client)["properties"]["$exception_list"]
    assert [e["type"] for e in exc_list] == ["WrapperError", "RootError"]


def test_cex_without_chaining_the_list_holds_one(server, make_client):
    client = make_client()
    client.capture_exception(_caught(boom), "u1")
    assert len(_one(server, client)["properties"]["$exception_list"]) == 1


def test_cex_source_context_five_lines_each_side(server, make_client, tmp_path):
    source = tmp_path / "app_module.py"
    lines = [f"x{n} = {n}  # line {n}" for n in range(1, 60)]
    lines[39] = "raise ValueError('at line 40')"
    source.write_text("\n".join(lines) + "\n")
    code = compile(source.read_text(), str(source), "exec")
    client = make_client()
    client.capture_exception(_caught(lambda: exec(code, {})), "u1")
    frames = _one(server, client)["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    crash = frames[-1]
    assert crash["abs_path"] == str(source) and crash["lineno"] == 40
    assert crash["context_line"] == lines[39]
    assert crash["pre_context"] == lines[34:39]  # lines 35..39, ascending
    assert crash["post_context"] == lines[40:45]  # lines 41..45, ascending


def test_cex_no_source_context_leaves_the_fields_out(server, make_client):
    code = compile("def f():\n    raise ValueError('x')\nf()\n", "/nonexistent/gone.py", "exec")
    client = make_client()
    client.capture_exception(_caught(lambda: exec(code, {})), "u1")
    frames = _one(server, client)["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    gone = [f for f in frames if f["abs_path"] == "/nonexistent/gone.py"]
    assert len(gone) == 2
    for frame in gone:
        assert not {"context_line", "pre_context", "post_context"} & set(frame)


def test_cex_exception_never_raised_has_no_stacktrace_and_is_not_synthetic(server, make_client):
    client = make_client()
    client.capture_exception(ValueError("built, never raised"), "u1")
    entry = _one(server, client)["properties"]["$exception_list"][0]
    assert "stacktrace" not in entry
    assert entry["mechanism"]["synthetic"] is False  # EEM-08, second row


def test_cex_never_raises_and_disabled_or_opted_out_do_nothing(server, make_client):
    class Hostile(Exception):
        def __str__(self):
            raise RuntimeError("no str for you")

    client = make_client()
    assert client.capture_exception(Hostile(), "u1") is not None
    assert _one(server, client)["properties"]["$exception_message"] == "<unprintable Hostile>"
    client.opt_out()
    assert client.capture_exception(ValueError("x"), "u1") is None
    assert client.stats.dropped["opted_out"] == 1
    disabled = make_client(disabled=True)
    assert disabled.capture_exception(ValueError("x"), "u1") is None
    assert disabled.stats.dropped["disabled"] == 1
    disabled.close()
    assert client.capture_exception(ValueError("y"), "u1", properties=object()) is None
    client.opt_in()
    client.close()
    assert client.capture_exception(ValueError("z"), "u1") is None
    assert client.stats.dropped["closed"] == 1


def test_cex_no_exception_being_handled_is_an_invalid_drop(make_client):
    client = make_client()
    assert client.capture_exception() is None
    assert client.stats.dropped["invalid"] == 1
    assert client.stats.attempted == 1


def test_cex_identity_explicit_then_context_then_personless(server, make_client):
    client = make_client()
    client.capture_exception(ValueError("a"), "explicit")
    with context(distinct_id="from-context", session_id="s1"):
        client.capture_exception(ValueError("b"))
    client.capture_exception(ValueError("c"))  # outside any context: still sent
    client.flush(5)
    by_message = {e["properties"]["$exception_message"]: e for e in server.events}
    assert by_message["a"]["distinct_id"] == "explicit"
    assert "$process_person_profile" not in by_message["a"]["properties"]
    assert by_message["b"]["distinct_id"] == "from-context"
    assert by_message["b"]["properties"]["$session_id"] == "s1"
    personless = by_message["c"]
    assert (
        personless["distinct_id"] and personless["properties"]["$process_person_profile"] is False
    )


def test_cex_keeps_an_existing_stack_string(server, make_client):
    # [S] An error-like value that already carries a stack string: its frames come from
    # that stack (the integrations' path: structlog's rendered exception, spans).
    from posthog_otel._exc_text import parse_traceback

    text = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/main.py", line 3, in main\n'
        "    handler()\n"
        '  File "/srv/app/handler.py", line 9, in handler\n'
        "    boom()\n"
        '  File "/srv/app/boom.py", line 2, in boom\n'
        '    raise TypeError("boom")\n'
        "TypeError: boom\n"
    )
    entries = parse_traceback(text)
    assert [f[2] for f in entries[0].frames or ()] == ["main", "handler", "boom"]
    props = exception_properties(entries, Boundary("error", "generic", True))
    assert props["$exception_list"][0]["mechanism"]["synthetic"] is False


def test_cex_exception_events_are_batched_like_any_event(server, make_client):
    client = make_client(flush_at=3)
    client.capture("before", "u1")
    client.capture_exception(ValueError("x"), "u1")
    client.capture("after", "u1")
    server.wait_for_events(3)
    assert len(server.capture_requests()) == 1
    assert server.event_names() == ["before", "$exception", "after"]


# ---------------------------------------------------------------------- EEM (§2.7)


def test_eem_manual_caught_defaults(server, make_client):
    client = make_client()
    client.capture_exception(_caught(boom), "u1")
    props = _one(server, client)["properties"]
    assert props["$exception_level"] == "error"
    assert "$exception_source" not in props
    mechanism = props["$exception_list"][0]["mechanism"]
    assert mechanism == {"type": "generic", "handled": True, "synthetic": False, "exception_id": 0}
    # EEM-18/20: pure Python, nothing processor-owned.
    for key in ("$debug_images", "$exception_types", "$exception_handled", "$exception_sources"):
        assert key not in props
    assert "$exception_fingerprint" not in props  # EEM-19: never invented


def test_eem_wrapped_cause_linkage(server, make_client):
    def wrapped():
        try:
            _raise(RootError("Connection failed"))
        except RootError as exc:
            raise WrapperError("Checkout failed") from exc

    client = make_client()
    client.capture_exception(_caught(wrapped), "u1")
    outer, inner = _one(server, client)["properties"]["$exception_list"]
    assert outer["mechanism"]["exception_id"] == 0
    assert "parent_id" not in outer["mechanism"] and "source" not in outer["mechanism"]
    assert inner["mechanism"] == {
        "type": "chained",
        "source": "cause",
        "synthetic": False,
        "exception_id": 1,
        "parent_id": 0,
    }
    assert "handled" not in inner["mechanism"]  # nested: unknown, never copied


def test_eem_implicit_context_and_suppressed_context(server, make_client):
    def implicit():
        try:
            _raise(KeyError("k"))
        except KeyError:
            raise ValueError("while handling")  # noqa: B904 - the implicit __context__

    def suppressed():
        try:
            _raise(KeyError("k"))
        except KeyError:
            raise ValueError("from None") from None

    client = make_client()
    client.capture_exception(_caught(implicit), "u1")
    client.capture_exception(_caught(suppressed), "u1")
    client.flush(5)
    implicit_list = server.events[0]["properties"]["$exception_list"]
    suppressed_list = server.events[1]["properties"]["$exception_list"]
    assert [e["type"] for e in implicit_list] == ["ValueError", "KeyError"]
    assert implicit_list[1]["mechanism"]["source"] == "context"
    assert [e["type"] for e in suppressed_list] == ["ValueError"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11+")
def test_eem_aggregate_members_depth_first(server, make_client):
    def second():
        try:
            _raise(RootError("root of second"))
        except RootError as exc:
            raise WrapperError("second") from exc

    group = ExceptionGroup("many", [ValueError("first"), _caught(second)])  # noqa: F821
    client = make_client()
    client.capture_exception(_caught(lambda: _raise(group)), "u1")
    exc_list = _one(server, client)["properties"]["$exception_list"]
    shape = [
        (e["type"], e["mechanism"].get("parent_id"), e["mechanism"].get("source")) for e in exc_list
    ]
    assert shape == [
        ("ExceptionGroup", None, None),
        ("ValueError", 0, "member"),
        ("WrapperError", 0, "member"),
        ("RootError", 2, "cause"),
    ]
    ids = [e["mechanism"]["exception_id"] for e in exc_list]
    assert ids == [0, 1, 2, 3]
    assert all(e["mechanism"]["type"] == "chained" for e in exc_list[1:])
    assert exc_list[0]["mechanism"]["is_exception_group"] is True


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11+")
def test_eem_nested_groups(server, make_client):
    inner = ExceptionGroup("inner", [KeyError("a"), KeyError("b")])  # noqa: F821
    outer = ExceptionGroup("outer", [inner, ValueError("c")])  # noqa: F821
    client = make_client()
    client.capture_exception(outer, "u1")
    exc_list = _one(server, client)["properties"]["$exception_list"]
    shape = [(e["value"], e["mechanism"].get("parent_id")) for e in exc_list]
    assert shape == [
        ("outer (2 sub-exceptions)", None),
        ("inner (2 sub-exceptions)", 0),
        ("'a'", 1),
        ("'b'", 1),
        ("c", 0),
    ]


def test_eem_cycle_and_more_than_50_reachable(server, make_client):
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a  # a cycle
    chain = ValueError("0")
    head = chain
    for n in range(1, 120):
        nxt = ValueError(str(n))
        chain.__cause__ = nxt
        chain = nxt
    client = make_client()
    client.capture_exception(a, "u1")
    client.capture_exception(head, "u1")
    client.flush(5)
    cyclic = server.events[0]["properties"]["$exception_list"]
    long = server.events[1]["properties"]["$exception_list"]
    assert [e["value"] for e in cyclic] == ["a", "b"]
    assert len(long) == 50
    assert [e["value"] for e in long] == [str(n) for n in range(50)]  # earliest kept


def test_eem_level_type_handled_overrides_and_invalid_ones(server, make_client):
    client = make_client()
    # Valid typed metadata wins (EEM-15/17) ...
    client.capture_exception(
        ValueError("valid"), "u1", level="warn", mechanism={"type": "task", "handled": False}
    )
    # ... an invalid one falls through to the manual boundary's default, field by field,
    # and a valid sibling is kept (EEM-04; the spec's malformed example).
    client.capture_exception(
        ValueError("invalid"),
        "u1",
        level="verbose",
        mechanism={"type": "", "handled": "yes", "synthetic": False, "vendor_flag": 3},
    )
    client.flush(5)
    valid, invalid = (e["properties"] for e in server.events)
    assert valid["$exception_level"] == "warning"
    assert valid["$exception_list"][0]["mechanism"]["type"] == "task"  # unknown types kept
    assert valid["$exception_list"][0]["mechanism"]["handled"] is False
    assert invalid["$exception_level"] == "error"
    mechanism = invalid["$exception_list"][0]["mechanism"]
    assert mechanism["type"] == "generic"
    assert mechanism["handled"] is True
    assert mechanism["synthetic"] is False
    assert mechanism["vendor_flag"] == 3  # a JSON-safe platform extra


def test_eem_property_bag_cannot_override_sdk_owned_keys(server, make_client):
    client = make_client()
    client.capture_exception(
        ValueError("real"),
        "u1",
        {
            "$exception_list": [{"type": "Fake"}],
            "$exception_level": "debug",
            "$exception_source": "django.middleware",  # cannot impersonate an integration
            "$exception_type": "Fake",
            "$exception_types": ["Fake"],
            "$exception_issue_id": "x",
            "$exception_handled": False,
            "$exception_fingerprint": "checkout-db",  # the one documented plain key
        },
    )
    props = _one(server, client)["properties"]
    assert props["$exception_list"][0]["type"] == "ValueError"
    assert props["$exception_type"] == "ValueError"
    assert props["$exception_level"] == "error"
    assert "$exception_source" not in props
    for key in ("$exception_types", "$exception_issue_id", "$exception_handled"):
        assert key not in props
    assert props["$exception_fingerprint"] == "checkout-db"


def test_eem_empty_fingerprint_stays_absent(server, make_client):
    client = make_client()
    client.capture_exception(ValueError("x"), "u1", {"$exception_fingerprint": ""})
    assert "$exception_fingerprint" not in _one(server, client)["properties"]


def test_eem_context_free_builder():
    entries = [ExcEntry("ValueError", "x", None, None, 0)]
    # A context-free producer: no level, source, fingerprint or debug images, and a
    # mechanism of its linkage only.
    props = exception_properties(entries, None)
    assert props["$exception_list"][0]["mechanism"] == {"exception_id": 0}
    for key in ("$exception_level", "$exception_source", "$exception_fingerprint", "$debug_images"):
        assert key not in props
    # An invalid handled value with no other source is left out; unknown levels too.
    props = exception_properties(entries, Boundary(level="verbose", handled="yes"))  # type: ignore[arg-type]
    assert props["$exception_list"][0]["mechanism"] == {"exception_id": 0}
    assert "$exception_level" not in props
    # Known fields use their JSON types, no null placeholders.
    props = exception_properties(
        snapshot_exception(_caught(boom)), Boundary("error", "generic", True)
    )
    assert None not in props["$exception_list"][0]["mechanism"].values()


def test_eem_low_level_builder_keeps_all_six_fields_of_a_nested_entry():
    entries = [
        ExcEntry("Outer", "o", None, None, 0),
        ExcEntry("Inner", "i", None, None, 1, 0, "inner", True, handled=False),
    ]
    nested = exception_properties(entries, None)["$exception_list"][1]["mechanism"]
    assert nested == {
        "type": "chained",
        "source": "inner",
        "handled": False,
        "synthetic": True,
        "exception_id": 1,
        "parent_id": 0,
    }


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("critical", "fatal"),
        ("FATAL", "fatal"),
        ("warn", "warning"),
        ("notice", "info"),
        ("trace", "debug"),
        ("log", "log"),
        (50, "fatal"),
        (40, "error"),
        (30, "warning"),
        (20, "info"),
        (10, "debug"),
    ],
)
def test_eem_level_normalization(level, expected):
    from posthog_otel._exc_snapshot import normalize_level

    assert normalize_level(level) == expected


def test_eem_frames_fields_and_in_app(server, make_client):
    import json as stdlib_json

    def fail_in_stdlib():
        stdlib_json.loads("{not json")

    client = make_client(in_app_exclude=["tests.test_exceptions_excluded"])
    client.capture_exception(_caught(fail_in_stdlib), "u1")
    frames = _one(server, client)["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    ours = frames[0]
    assert set(ours) >= {"filename", "abs_path", "function", "lineno", "module", "in_app"}
    assert ours["in_app"] is True and ours["module"] == __name__
    assert ours["filename"].endswith("test_exceptions.py") and not ours["filename"].startswith("/")
    stdlib = [f for f in frames if f["module"].startswith("json")]
    assert stdlib and all(f["in_app"] is False for f in stdlib)


def test_eem_in_app_include_and_exclude(server, make_client):
    client = make_client(in_app_exclude=[__name__.split(".")[0]], in_app_include=["json"])
    import json as stdlib_json

    client.capture_exception(_caught(lambda: stdlib_json.loads("{")), "u1")
    frames = _one(server, client)["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert all(f["in_app"] is (f["module"].startswith("json")) for f in frames)


# ---------------------------------------------------------------------- bounded cost


def test_recursion_depth_traceback_stays_small(server, make_client):
    def recurse(n):
        return recurse(n + 1)

    exc = _caught(lambda: recurse(0))
    assert isinstance(exc, RecursionError)
    client = make_client()
    client.capture_exception(exc, "u1")
    event = _one(server, client)
    frames = event["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert len(frames) == 50
    assert frames[0]["function"] == "_caught" and frames[-1]["function"] == "recurse"
    assert len(json.dumps(event)) < 100_000


def test_huge_exception_tree_stays_under_the_event_limit(server, make_client):
    def deep(n, message):
        if n:
            return deep(n - 1, message)
        raise ValueError(message)

    head = _caught(lambda: deep(60, "x" * 20_000))
    node = head
    for i in range(60):  # 60 chained exceptions, each 60 frames deep, long messages
        nxt = _caught(lambda i=i: deep(60, f"{i}" * 20_000))
        node.__cause__ = nxt
        node = nxt
    client = make_client()
    client.capture_exception(head, "u1")
    event = _one(server, client)
    assert len(json.dumps(event["properties"])) <= MAX_EXCEPTION_BYTES


def test_the_queue_holds_no_traceback(make_client):
    """The traceback (and the frames' locals) is let go on the caller's thread."""
    import gc
    import weakref

    class Big:
        pass

    client = make_client()

    def fails():
        payload = Big()  # a local of a frame in the traceback
        ref.append(weakref.ref(payload))
        raise ValueError("x")

    ref: list[weakref.ref[Big]] = []
    exc = _caught(fails)
    client.capture_exception(exc, "u1")
    del exc
    gc.collect()
    assert ref[0]() is None  # queued, and nothing of the frame is alive
    assert client.stats.queued == 1


def test_caller_thread_cost_is_bounded_for_deep_stacks(make_client):
    client = make_client()
    done = threading.Event()

    def recurse(n):
        if n == 0:
            tracemalloc.start()
            try:
                raise ValueError("deep")
            except ValueError:
                client.capture_exception()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak < 200_000
            done.set()
            return
        recurse(n - 1)

    recurse(800)
    assert done.is_set()


# ---------------------------------------------------------------------- fake server


def test_fake_server_validates_exception_events(server):
    import httpx

    def post(properties):
        body = {
            "api_key": "phc_test_key_0123456789",
            "batch": [{"event": "$exception", "distinct_id": "u1", "properties": properties}],
        }
        return httpx.post(server.url + "/batch/", json=body).status_code

    assert post({"$exception_list": [{"type": "E", "value": "v"}]}) == 200
    assert post({}) == 400
    assert post({"$exception_list": []}) == 400
    assert post({"$exception_list": [{"type": ""}]}) == 400
    assert post({"$exception_list": [{"type": 3}]}) == 400
    assert post({"$exception_list": [{"type": "E", "stacktrace": {"frames": {}}}]}) == 400
    assert post({"$exception_list": [{"type": "E", "mechanism": []}]}) == 400


def test_client_without_key_is_disabled_for_exceptions():
    client = Client(None, disabled=True)
    assert client.capture_exception(ValueError("x")) is None
    client.close()
