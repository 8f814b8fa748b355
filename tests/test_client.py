"""Client semantics: validation, identity, before_send, opt-out, config, secrecy."""

from __future__ import annotations

import logging
import threading

import pytest

from posthog_otel import Capture, Client, context, get_distinct_id

from .conftest import API_KEY

# ---------------------------------------------------------------- validation and identity


def test_capture_queues_event_and_returns_uuid(server, make_client):
    client = make_client()
    returned = client.capture("Signed Up", distinct_id="user-123", properties={"source": "api"})
    assert returned
    client.flush(5)
    (event,) = server.events
    assert event["distinct_id"] == "user-123" and event["uuid"] == returned
    assert event["properties"]["source"] == "api" and event["properties"]["$lib"]


@pytest.mark.parametrize(
    "message",
    [
        Capture("", "u1"),
        Capture(None, "u1"),  # type: ignore[arg-type]
        Capture("evt", None),
        Capture("evt", ""),
        Capture("evt", "u1", properties=["not", "a", "mapping"]),  # type: ignore[arg-type]
    ],
)
def test_invalid_captures_are_dropped_with_a_warning(make_client, warnings_log, message):
    client = make_client()
    assert client.enqueue(message) is None
    assert client.stats.dropped["invalid"] == 1
    assert "invalid" in warnings_log.text


def test_enqueue_of_a_non_message_never_raises(make_client):
    client = make_client()
    assert client.enqueue({"event": "x"}) is None  # type: ignore[arg-type]
    assert client.stats.dropped["invalid"] == 1


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("alias", (None, "user-123")),
        ("alias", ("anon", "")),
        ("identify", (None, {"email": "x"})),
        ("group_identify", ("company", None)),
        ("group_identify", ("", "acme")),
    ],
)
def test_identity_calls_without_ids_queue_nothing(server, make_client, warnings_log, call, args):
    client = make_client()
    assert getattr(client, call)(*args) is None
    assert client.stats.dropped["invalid"] == 1
    assert client.stats.enqueued == 0
    assert client.flush(5) and server.requests == []


def test_context_supplies_distinct_id_and_session(server, make_client):
    client = make_client()
    with context(distinct_id="user-123", session_id="session-123", properties={"tier": "gold"}):
        assert get_distinct_id() == "user-123"
        client.capture("Backend Work")
        client.capture("Explicit", "explicit-user", {"$session_id": "explicit-session"})
        with context(session_id="inner"):
            assert get_distinct_id() == "user-123"
            client.capture("Nested")
    assert get_distinct_id() is None
    client.flush(5)
    work, explicit, nested = server.events
    assert work["distinct_id"] == "user-123"
    assert work["properties"]["$session_id"] == "session-123"
    assert work["properties"]["tier"] == "gold"
    assert "$process_person_profile" not in work["properties"]
    assert explicit["distinct_id"] == "explicit-user"
    assert explicit["properties"]["$session_id"] == "explicit-session"
    assert nested["properties"]["$session_id"] == "inner"


def test_context_without_distinct_id_is_personless(server, make_client):
    client = make_client()
    with context(session_id="session-123"):
        client.capture("Backend Work")
        client.capture("Kept", properties={"$process_person_profile": True})
    client.flush(5)
    first, second = server.events
    assert first["distinct_id"] and first["distinct_id"] != "session-123"
    assert first["properties"]["$process_person_profile"] is False
    assert first["properties"]["$session_id"] == "session-123"
    assert second["properties"]["$process_person_profile"] is True
    assert first["distinct_id"] != second["distinct_id"]


def test_outside_any_context_a_capture_without_id_is_dropped(make_client):
    client = make_client()
    assert get_distinct_id() is None
    assert client.capture("Backend Work") is None
    assert client.stats.dropped["invalid"] == 1


def test_contexts_do_not_leak_between_threads(server, make_client):
    client = make_client()
    barrier = threading.Barrier(2)

    def request(user: str) -> None:
        with context(distinct_id=user):
            barrier.wait()
            client.capture("req")

    threads = [threading.Thread(target=request, args=(u,)) for u in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.flush(5)
    assert sorted(e["distinct_id"] for e in server.events) == ["a", "b"]


# ---------------------------------------------------------------- before_send


def test_before_send_modifies_and_drops(server, make_client):
    def add_privacy(event):
        event["properties"]["privacy"] = "filtered"
        return event

    def drop_secret(event):
        return None if event["event"] == "Secret Event" else event

    client = make_client(before_send=[add_privacy, drop_secret])
    assert client.capture("Checkout Started", "u")
    assert client.capture("Secret Event", "u") is None
    client.flush(5)
    (event,) = server.events
    assert event["properties"]["privacy"] == "filtered"
    assert client.stats.dropped["before_send"] == 1


def test_before_send_sees_the_assembled_event(make_client):
    seen = []
    client = make_client(before_send=lambda e: seen.append(dict(e)) or e)
    client.identify("u1", {"email": "x"})
    (event,) = seen
    assert set(event) >= {"event", "distinct_id", "properties", "timestamp", "uuid", "$set"}
    assert isinstance(event["timestamp"], str) and event["timestamp"].endswith("+00:00")
    assert event["properties"]["$lib"] == "posthog-otel"


def test_before_send_chain_fails_closed(server, make_client, warnings_log):
    calls = []

    def first(event):
        calls.append("first")
        event["properties"]["email"] = "redacted"
        return event

    def second(event):
        calls.append("second")
        raise RuntimeError("boom")

    def third(event):
        calls.append("third")
        return event

    client = make_client(before_send=[first, second, third], sync_mode=True)
    assert client.capture("Safe Event", "u") is None
    assert calls == ["first", "second"]
    assert client.stats.dropped["before_send_error"] == 1
    assert "before_send" in warnings_log.text
    assert client.flush(5)
    assert server.requests == []


def test_before_send_can_change_uuid_name_and_timestamp(server, make_client):
    import uuid

    new_uuid = str(uuid.uuid4())

    def rewrite(event):
        event["uuid"] = new_uuid
        event["event"] = "renamed"
        event["timestamp"] = "2026-01-01T00:00:00Z"
        return event

    client = make_client(before_send=rewrite)
    assert client.capture("orig", "u") == new_uuid
    client.flush(5)
    (event,) = server.events
    assert event["event"] == "renamed" and event["uuid"] == new_uuid
    assert event["timestamp"] == "2026-01-01T00:00:00+00:00"


def test_before_send_returning_a_bad_uuid_gets_a_fresh_one(server, make_client):
    client = make_client(before_send=lambda e: {**e, "uuid": "nope"})
    returned = client.capture("evt", "u")
    assert returned and returned != "nope"
    client.flush(5)
    assert server.events[0]["uuid"] == returned


# ---------------------------------------------------------------- switches


def test_opt_out_short_circuits_and_opt_in_resumes(server, make_client):
    client = make_client()
    client.opt_out()
    assert client.is_opted_out
    assert client.capture("Ignored Event", "u") is None
    assert client.flush(5) and server.requests == []
    client.opt_in()
    assert client.capture("Kept", "u")
    client.flush(5)
    assert server.event_names() == ["Kept"]
    assert client.stats.dropped["opted_out"] == 1


def test_opt_out_is_checked_before_before_send(make_client):
    calls = []
    client = make_client(before_send=lambda e: calls.append(e) or e)
    client.opt_out()
    client.capture("x", "u")
    assert calls == []


def test_disabled_client_sends_nothing(server, make_client):
    client = make_client(disabled=True)
    assert client.disabled
    assert client.capture("evt", "u") is None
    assert client.flush(5) and server.requests == []
    assert client.stats.dropped["disabled"] == 1


def test_missing_api_key_disables_with_one_warning(monkeypatch, caplog):
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.delenv("POSTHOG_PROJECT_API_KEY", raising=False)
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    client = Client()
    assert client.disabled
    assert client.capture("evt", "u") is None
    assert len([r for r in caplog.records if "API key" in r.getMessage()]) == 1
    client.close()


def test_environment_fallbacks(monkeypatch, server):
    monkeypatch.setenv("POSTHOG_PROJECT_API_KEY", "phc_from_project_env")
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.setenv("POSTHOG_HOST", server.url + "/")
    monkeypatch.setenv("POSTHOG_PERSONAL_API_KEY", "phx_personal")
    client = Client()
    assert client.host == server.url
    assert client.config.secret_key == "phx_personal"
    client.capture("evt", "u")
    client.flush(5)
    assert server.requests[0].json["api_key"] == "phc_from_project_env"
    client.close()
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_primary")
    monkeypatch.setenv("POSTHOG_SECRET_KEY", "phs_secret")
    other = Client()
    assert other.config.api_key == "phc_primary" and other.config.secret_key == "phs_secret"
    assert Client(secret_key="").config.secret_key is None  # "" turns local evaluation off
    assert Client(personal_api_key="phx_p").config.secret_key == "phx_p"
    assert Client(secret_key="phs_a", personal_api_key="phx_p").config.secret_key == "phs_a"
    other.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://app.posthog.com", "https://us.i.posthog.com"),
        ("https://us.posthog.com/", "https://us.i.posthog.com"),
        ("https://eu.posthog.com", "https://eu.i.posthog.com"),
        ("https://ph.example.com/", "https://ph.example.com"),
        ("  ", "https://us.i.posthog.com"),
    ],
)
def test_host_mapping(given, expected):
    assert Client("phc_x", host=given).host == expected


def test_bad_environment_host_warns_and_falls_back(monkeypatch, caplog):
    monkeypatch.setenv("POSTHOG_HOST", "not a url")
    caplog.set_level(logging.WARNING, logger="posthog_otel")
    assert Client("phc_x").host == "https://us.i.posthog.com"
    assert "POSTHOG_HOST" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"flush_at": 0}, "flush_at"),
        ({"max_queue_size": -1}, "max_queue_size"),
        ({"max_batch_size": "10"}, "max_batch_size"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"timeout": -1}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retry_cycles": 0}, "max_retry_cycles"),
        ({"before_send": "nope"}, "before_send"),
        ({"on_error": 3}, "on_error"),
        ({"host": "ftp://x"}, "host"),
        ({"super_properties": [1]}, "super_properties"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Client("phc_x", **kwargs)


def test_api_key_never_in_repr_or_logs(server, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(debug=True, max_retries=0, on_error=lambda e, ev: None)
    server.fail_next(1, 401)
    client.capture("evt", "u")
    client.capture("", "u")
    client.flush(5)
    text = caplog.text + repr(client) + str(client.stats)
    assert API_KEY not in text
    assert API_KEY[6:] not in text
    assert "phc_" in repr(client)
    logging.getLogger("posthog_otel").setLevel(logging.NOTSET)


def test_stats_snapshot(server, make_client):
    client = make_client()
    for i in range(3):
        client.capture(f"e{i}", "u")
    stats = client.stats
    assert (stats.queued, stats.enqueued, stats.sent) == (3, 3, 0)
    client.flush(5)
    stats = client.stats
    assert (stats.queued, stats.in_flight, stats.sent, stats.retained) == (0, 0, 3, 0)
    with pytest.raises(TypeError):
        stats.dropped["x"] = 1  # type: ignore[index]


def test_configuration_is_frozen_data_with_secrets_out_of_its_repr(server):
    import dataclasses

    client = Client(
        "phc_visible",
        host=server.url.replace("http://", "http://user:hunter2@"),
        secret_key="phs_hidden",
        flush_at=7,
        feature_flags_poll_interval=12,
        _exit_hook=False,
    )
    config = client.config
    assert config.delivery.flush_at == 7 and config.flags.poll_interval == 12
    assert config.secret_key == "phs_hidden" and client.host == server.url
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.delivery.flush_at = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.api_key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.super_properties["$lib"] = "mine"  # type: ignore[index]
    shown = repr(config)
    assert "phs_hidden" not in shown and "hunter2" not in shown
    assert not hasattr(client, "feature_flags_poll_interval")  # options live in config
    client.close(0)
