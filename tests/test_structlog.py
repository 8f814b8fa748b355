"""PostHogProcessor with real structlog chains."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthog_otel import PostHogHandler, PostHogProcessor, context


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def configure(processor, *, final=None):
    rendered = []

    def capture_render(logger, method, event_dict):
        rendered.append(dict(event_dict))
        return ""

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            processor,
            final or capture_render,
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    return rendered


def test_event_dict_becomes_event_and_chain_continues(server, make_client):
    client = make_client()
    rendered = configure(PostHogProcessor(client))
    structlog.get_logger("svc").info("user_signed_up", distinct_id="u1", plan="pro")
    client.flush(5)
    (event,) = server.events
    assert event["event"] == "user_signed_up" and event["distinct_id"] == "u1"
    props = event["properties"]
    assert props["plan"] == "pro"
    assert props["$log_level"] == "info"
    for internal in ("timestamp", "level", "event", "distinct_id"):
        assert internal not in props
    (out,) = rendered
    assert out["distinct_id"] == "u1" and out["plan"] == "pro" and out["event"] == "user_signed_up"


def test_identity_from_bound_contextvars_and_identity_context(server, make_client):
    client = make_client()
    configure(PostHogProcessor(client))
    log = structlog.get_logger()
    with structlog.contextvars.bound_contextvars(distinct_id="ctx-user"):
        log.info("bound")
        log.info("explicit", distinct_id="explicit-user")
    with context(distinct_id="identity-user", session_id="s1"):
        log.info("from identity")
    log.info("nobody")
    client.flush(5)
    bound, explicit, identity = server.events
    assert bound["distinct_id"] == "ctx-user"
    assert explicit["distinct_id"] == "explicit-user"
    assert identity["distinct_id"] == "identity-user"
    assert identity["properties"]["$session_id"] == "s1"


def test_contextvars_without_merge_processor(server, make_client):
    client = make_client()
    structlog.configure(
        processors=[PostHogProcessor(client), lambda logger, method, ev: ""],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    structlog.contextvars.bind_contextvars(distinct_id="bound-only")
    structlog.get_logger().info("no merge")
    client.flush(5)
    assert server.events[0]["distinct_id"] == "bound-only"


def test_level_threshold_and_personless(server, make_client):
    client = make_client()
    configure(PostHogProcessor(client, level="warning", personless=True))
    log = structlog.get_logger()
    log.info("too low", distinct_id="u")
    log.warning("anonymous")
    client.flush(5)
    (event,) = server.events
    assert event["event"] == "anonymous"
    assert event["properties"]["$process_person_profile"] is False


def test_async_logger(server, make_client):
    client = make_client()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            PostHogProcessor(client),
            lambda logger, method, ev: "",
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.ReturnLoggerFactory(),
    )

    async def main():
        await structlog.get_logger().ainfo("async event", distinct_id="u-async")

    asyncio.run(main())
    client.flush(5)
    assert server.events[0]["distinct_id"] == "u-async"


def test_stdlib_integration_is_not_captured_twice(server, make_client):
    client = make_client()
    std = logging.getLogger("structlog.stdlib.test")
    std.propagate = False
    std.setLevel(logging.INFO)
    handler = PostHogHandler(client)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    )
    std.addHandler(handler)
    try:
        structlog.configure(
            processors=[
                structlog.stdlib.add_log_level,
                PostHogProcessor(client),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        structlog.get_logger("structlog.stdlib.test").info("once", distinct_id="u")
        # render_to_log_kwargs: extras on the record, msg is the event name
        structlog.configure(
            processors=[
                structlog.stdlib.add_log_level,
                PostHogProcessor(client),
                structlog.stdlib.render_to_log_kwargs,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        structlog.get_logger("structlog.stdlib.test").info("twice?", distinct_id="u")
        # a plain stdlib record afterwards is still captured
        std.info("plain stdlib", extra={"distinct_id": "u"})
        client.flush(5)
        assert server.event_names() == ["once", "twice?", "plain stdlib"]
    finally:
        std.removeHandler(handler)


def test_processor_never_raises(make_client):
    client = make_client()
    processor = PostHogProcessor(client)

    class Exploding:
        def __str__(self):
            raise RuntimeError("no")

    event_dict = {"event": "x", "distinct_id": Exploding()}
    assert processor(None, "info", event_dict) is event_dict
    assert processor(None, "info", {"event": None}) == {"event": None}


event_dicts = st.dictionaries(
    st.text(),
    st.one_of(st.none(), st.integers(), st.text(), st.floats(), st.binary(), st.builds(object)),
    max_size=6,
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(event_dict=event_dicts, method=st.sampled_from(["info", "warning", "msg", "bogus"]))
def test_generated_event_dicts_never_raise_and_pass_through(event_dict, method):
    from posthog_otel import Client

    client = Client("phc_x", host="http://127.0.0.1:9", flush_interval=3600)
    processor = PostHogProcessor(client, personless=True)
    before = dict(event_dict)
    assert processor(None, method, event_dict) is event_dict
    assert event_dict == before
    client.close(0)


def test_snapshot_is_taken_and_event_built_off_the_logging_thread(server, make_client):
    import threading

    seen = []

    def hook(event):
        seen.append(threading.current_thread().name)
        return event

    client = make_client(before_send=hook)

    def mutate(logger, method, event_dict):
        event_dict["plan"] = "changed later"
        event_dict.pop("seats")
        return ""

    configure(PostHogProcessor(client), final=mutate)
    structlog.get_logger().info("upgraded", distinct_id="u1", plan="pro", seats=3)
    client.flush(5)
    (event,) = server.events
    assert event["properties"]["plan"] == "pro" and event["properties"]["seats"] == 3
    assert seen == ["posthog_otel-flush"]
