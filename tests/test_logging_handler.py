"""PostHogHandler with the real logging module against the fake server."""

from __future__ import annotations

import logging
import logging.config
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthog_otel import PostHogHandler, context

from .conftest import API_KEY, fresh


@pytest.fixture
def attach():
    attached: list[tuple[logging.Logger, logging.Handler, int, bool]] = []

    def attach(handler: logging.Handler, name: str = "app", level: int = logging.DEBUG):
        log = logging.getLogger(name)
        attached.append((log, handler, log.level, log.propagate))
        log.addHandler(handler)
        log.setLevel(level)
        if name:
            log.propagate = False  # keep pytest's own capture handler out of the way
        return log

    yield attach
    for log, handler, level, propagate in attached:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


def test_record_becomes_event(server, make_client, attach):
    client = make_client()
    log = attach(PostHogHandler(client))
    log.info("user_signed_up", extra={"distinct_id": "u1", "login_type": "email"})
    client.flush(5)
    (event,) = server.events
    assert event["event"] == "user_signed_up"
    assert event["distinct_id"] == "u1"
    props = event["properties"]
    assert props["login_type"] == "email"
    assert props["$log_level"] == "info"
    assert props["$logger_name"] == "app"
    assert "$log_message" not in props
    for reserved in ("msg", "args", "levelname", "pathname", "lineno", "distinct_id", "created"):
        assert reserved not in props


def test_template_is_the_event_name_and_message_a_property(server, make_client, attach):
    client = make_client()
    log = attach(PostHogHandler(client))
    log.info("paid %s", 42, extra={"distinct_id": "u1"})
    log.info("paid %s", 7, extra={"distinct_id": "u1", "event": "payment"})
    client.flush(5)
    first, second = server.events
    assert first["event"] == "paid %s"
    assert first["properties"]["$log_message"] == "paid 42"
    assert second["event"] == "payment"
    assert second["properties"]["$log_message"] == "paid 7"


def test_set_set_once_and_groups_keep_their_meaning(server, make_client, attach):
    client = make_client()
    log = attach(PostHogHandler(client))
    log.info(
        "upgraded",
        extra={
            "distinct_id": "u1",
            "$set": {"plan": "pro"},
            "$set_once": {"first_plan": "free"},
            "groups": {"company": "acme"},
            "_private": 1,
        },
    )
    client.flush(5)
    props = server.events[0]["properties"]
    assert props["$set"] == {"plan": "pro"}
    assert props["$set_once"] == {"first_plan": "free"}
    assert props["$groups"] == {"company": "acme"}
    assert "groups" not in props and "_private" not in props


def test_identity_from_context_and_skipping(server, make_client, attach):
    client = make_client()
    handler = PostHogHandler(client, distinct_id_key="user")
    log = attach(handler)
    log.info("no identity")
    with context(session_id="s1"):
        log.info("context without id")
    with context(distinct_id="ctx-user", session_id="s2"):
        log.info("from context")
        log.info("explicit", extra={"user": "explicit-user"})
    client.flush(5)
    assert handler.skipped == 2
    from_ctx, explicit = server.events
    assert from_ctx["distinct_id"] == "ctx-user"
    assert from_ctx["properties"]["$session_id"] == "s2"
    assert explicit["distinct_id"] == "explicit-user"


def test_records_do_not_wait_for_the_handler_lock(server, make_client, attach):
    # emit only appends to the client's queue (which has its own lock): handle() does
    # not take the handler's I/O lock, so a thread holding it delays no log call.
    client = make_client()
    handler = PostHogHandler(client)
    log = attach(handler)
    held, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with handler.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert held.wait(5)
        done = threading.Event()
        worker = threading.Thread(
            target=lambda: (log.info("evt", extra={"distinct_id": "u1"}), done.set())
        )
        worker.start()
        assert done.wait(5), "the log call waited for the handler's lock"
    finally:
        release.set()
        holder.join(5)
        worker.join(5)
    assert client.flush(5)
    assert [event["event"] for event in server.events] == ["evt"]


def test_filters_and_skipped_count_without_the_lock(server, make_client, attach):
    client = make_client()
    handler = PostHogHandler(client)
    handler.addFilter(lambda record: record.getMessage() != "filtered")
    log = attach(handler)
    threads = [
        threading.Thread(target=lambda: [log.info("no identity") for _ in range(2_000)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    log.info("filtered", extra={"distinct_id": "u1"})
    log.info("kept", extra={"distinct_id": "u1"})
    assert client.flush(5)
    assert handler.skipped == 8_000  # every concurrent skip counted, none lost
    assert [event["event"] for event in server.events] == ["kept"]


def test_personless_records(server, make_client, attach):
    client = make_client()
    log = attach(PostHogHandler(client, personless=True))
    log.info("anonymous work")
    client.flush(5)
    (event,) = server.events
    assert event["properties"]["$process_person_profile"] is False


def test_level_and_filters_are_respected(server, make_client, attach):
    client = make_client()
    handler = PostHogHandler(client, level="WARNING")
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    log = attach(handler)
    log.info("too low", extra={"distinct_id": "u"})
    log.warning("secret stuff", extra={"distinct_id": "u"})
    log.warning("kept", extra={"distinct_id": "u"})
    client.flush(5)
    assert server.event_names() == ["kept"]


def test_dictconfig_with_keyword_arguments(server, monkeypatch):
    root = logging.getLogger("dictcfg")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "posthog": {
                    "class": "posthog_otel.PostHogHandler",
                    "level": "INFO",
                    "api_key": API_KEY,
                    "host": server.url,
                    "distinct_id_key": "uid",
                }
            },
            "loggers": {"dictcfg": {"handlers": ["posthog"], "level": "INFO"}},
        }
    )
    (handler,) = root.handlers
    try:
        root.info("configured", extra={"uid": "u9"})
        handler.flush()
        assert server.events[0]["distinct_id"] == "u9"
    finally:
        root.removeHandler(handler)
        handler.close()
    assert handler.client.capture("after", "u") is None  # a client it built is closed


def test_default_client_from_environment(server, monkeypatch, attach):
    import posthog_otel

    monkeypatch.setenv("POSTHOG_API_KEY", API_KEY)
    monkeypatch.setenv("POSTHOG_HOST", server.url)
    monkeypatch.setattr(posthog_otel.client, "_default_client", None)
    handler = PostHogHandler()
    assert handler.client is posthog_otel.default_client()
    log = attach(handler)
    log.info("via default", extra={"distinct_id": "u"})
    handler.flush()
    assert server.event_names() == ["via default"]
    handler.client.close()


def test_root_handler_at_debug_does_not_loop(server, make_client, attach):
    client = make_client(flush_interval=0.05)
    handler = PostHogHandler(client, level=logging.DEBUG, personless=True)
    attach(handler, name="", level=logging.DEBUG)
    app = logging.getLogger("app.loop")
    for i in range(5):
        app.info("work", extra={"distinct_id": "u", "i": i})
    assert client.flush(5)
    server.fail_next(1, 503)
    app.info("after failure", extra={"distinct_id": "u"})
    client.flush(5)  # retried: our warnings and httpx's request logs are not captured
    client.flush(5)
    names = server.event_names()
    assert names == ["work"] * 5 + ["after failure"]
    assert not any(n.startswith("HTTP Request") for n in names)
    loggers = {e["properties"]["$logger_name"] for e in server.events}
    assert loggers == {"app.loop"}


def test_emit_never_raises(server, make_client, attach, capsys):
    client = make_client()
    log = attach(PostHogHandler(client))
    log.info("bad args %s %s", 1, extra={"distinct_id": "u"})  # formatting fails
    client.flush(5)
    (event,) = server.events  # the template stands in for the unformattable message
    assert event["event"] == "bad args %s %s"
    assert "$log_message" not in event["properties"]


def test_records_are_built_off_the_logging_thread(server, make_client, attach):
    seen = []

    def hook(event):
        seen.append(threading.current_thread().name)
        return event

    client = make_client(before_send=hook)
    log = attach(PostHogHandler(client))
    log.info("deferred", extra={"distinct_id": "u"})
    client.flush(5)
    assert seen == ["posthog_otel-flush"]
    assert server.event_names() == ["deferred"]


def test_otel_span_ids_are_attached(server, make_client, attach):
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    client = make_client()
    log = attach(PostHogHandler(client))
    with tracer.start_as_current_span("op") as span:
        log.info("in span", extra={"distinct_id": "u"})
        ids = span.get_span_context()
    client.flush(5)
    props = server.events[0]["properties"]
    assert props["$trace_id"] == f"{ids.trace_id:032x}"
    assert props["$span_id"] == f"{ids.span_id:016x}"


extras = st.dictionaries(
    st.text(min_size=1).filter(lambda k: k not in {"message", "asctime"} and not k.isdigit()),
    st.one_of(st.none(), st.integers(), st.floats(), st.text(), st.binary(), st.builds(object)),
    max_size=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(extra=extras, msg=st.one_of(st.text(), st.integers(), st.builds(object)))
def test_generated_extras_never_raise(module_server, extra, msg):
    import logging as stdlib_logging

    from posthog_otel import Client

    record_attrs = set(vars(stdlib_logging.LogRecord("", 0, "", 0, "", (), None)))
    extra = {k: v for k, v in extra.items() if k not in record_attrs}
    server = fresh(module_server)
    client = Client(API_KEY, host=server.url)
    handler = PostHogHandler(client, personless=True)
    log = stdlib_logging.getLogger("generated")
    log.addHandler(handler)
    log.setLevel(stdlib_logging.INFO)
    try:
        log.info(msg, extra=extra)
        assert client.flush(5)
        # Either an event, or (an empty name) a counted drop: never an exception.
        assert len(server.events) + client.stats.dropped["invalid"] == 1
    finally:
        log.removeHandler(handler)
        client.close()
