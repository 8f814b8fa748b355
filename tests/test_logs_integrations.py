"""PostHog Logs from the integrations (issue #14): ``PostHogHandler(logs=True)`` and
``PostHogProcessor(logs=True)`` send every record at or above ``logs_level`` to
``/i/v1/logs`` (sdk-contracts §2.1), besides the analytics events they always sent."""

from __future__ import annotations

import logging
import logging.config

import pytest
import structlog

from posthog_otel import PostHogHandler, PostHogProcessor, context


def _attributes(record):
    return {kv["key"]: kv["value"] for kv in record["attributes"]}


def _value(any_value):
    (value,) = any_value.values()
    return value


@pytest.fixture
def attach():
    attached: list[tuple[logging.Logger, logging.Handler, int, bool]] = []

    def attach(handler: logging.Handler, name: str = "logsapp", level: int = logging.DEBUG):
        log = logging.getLogger(name)
        attached.append((log, handler, log.level, log.propagate))
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False
        return log

    yield attach
    for log, handler, level, propagate in attached:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


@pytest.fixture
def _reset_structlog():
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


# ---------------------------------------------------------------- PostHogHandler


def test_handler_ships_every_record_at_or_above_logs_level(server, make_client, attach):
    """Issue #14 item 3, LOG-06 mapping of stdlib levels: ``logs_level`` gates the logs
    lane, ``level`` the events; records without a distinct id go to Logs only, those
    with one become an event as well."""
    client = make_client()
    handler = PostHogHandler(client, level=logging.WARNING, logs=True, logs_level=logging.INFO)
    assert handler.level == logging.INFO and handler.events_level == logging.WARNING
    log = attach(handler)
    log.debug("below both")
    log.info("cache %s warmed", "eu")
    log.warning("disk low", extra={"distinct_id": "u1", "free_gb": 3})
    log.error("no identity")
    log.critical("meltdown")
    log.log(25, "custom level")
    assert client.flush(5)
    records = server.wait_for_log_records(5)
    assert [
        (r["body"]["stringValue"], r["severityNumber"], r["severityText"]) for r in records
    ] == [
        ("cache eu warmed", 9, "INFO"),
        ("disk low", 13, "WARN"),
        ("no identity", 17, "ERROR"),
        ("meltdown", 21, "FATAL"),
        ("custom level", 9, "INFO"),  # LOG-07: any other level is INFO
    ]
    warned = _attributes(records[1])
    assert warned["posthogDistinctId"] == {"stringValue": "u1"}
    assert warned["free_gb"] == {"intValue": "3"}
    assert warned["logger.name"] == {"stringValue": "logsapp"}
    assert (
        _value(warned["code.function"]) == "test_handler_ships_every_record_at_or_above_logs_level"
    )
    assert "posthogDistinctId" not in _attributes(records[0])
    (event,) = server.events  # only the identified record at WARNING became an event
    assert event["event"] == "disk low" and event["distinct_id"] == "u1"
    assert client.stats.logs.sent == 5


def test_handler_without_logs_sends_no_log_record(server, make_client, attach):
    """The default (``logs=False``) is unchanged: events only."""
    client = make_client()
    handler = PostHogHandler(client)
    assert handler.logs is False and handler.level == logging.INFO
    log = attach(handler)
    log.info("signed up", extra={"distinct_id": "u1"})
    assert client.flush(5)
    assert len(server.events) == 1 and server.log_records() == []


def test_handler_message_is_formatted_on_the_logging_thread(server, make_client, attach):
    """Issue #14 item 3: a %-argument changed after the call is not what is sent."""
    client = make_client()
    log = attach(PostHogHandler(client, logs=True))
    basket = ["apple"]
    log.info("basket %s", basket)
    basket.append("pear")
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    assert record["body"] == {"stringValue": "basket ['apple']"}


def test_handler_formats_a_record_once_for_logs_and_event(server, make_client, attach):
    """With ``logs=True`` a record that becomes both a log record and an event is
    formatted once: a ``%s`` argument's ``__str__`` runs once, and a record whose
    arguments do not fit its template is counted once, not once per lane."""
    calls = []

    class Counted:
        def __str__(self) -> str:
            calls.append(1)
            return "counted"

    client = make_client()
    log = attach(PostHogHandler(client, logs=True))
    log.info("paid %s", Counted(), extra={"distinct_id": "u1"})
    log.info("two %s %s", "args?", extra={"distinct_id": "u1"})
    assert client.flush(5)
    assert len(server.wait_for_log_records(2)) == 2
    assert sorted(e["event"] for e in server.events) == ["paid %s", "two %s %s"]
    assert calls == [1]
    assert client.stats.corrected["unformattable_message"] == 1


def test_handler_exception_text_becomes_exception_attributes(server, make_client, attach):
    """Issue #14 item 3: ``exception.type``/``exception.message``/``exception.stacktrace``
    for ``log.exception`` and for the traceback text a ``QueueHandler`` leaves."""
    client = make_client()
    log = attach(PostHogHandler(client, logs=True, exceptions=False))
    try:
        raise KeyError("sku-42")
    except KeyError:
        log.exception("lookup failed")
    prepared = logging.LogRecord(
        "logsapp", logging.ERROR, __file__, 1, "queued failure", None, None
    )
    prepared.exc_text = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad'
    log.handle(prepared)
    assert client.flush(5)
    direct, queued = server.wait_for_log_records(2)
    attributes = _attributes(direct)
    assert attributes["exception.type"] == {"stringValue": "KeyError"}
    assert attributes["exception.message"] == {"stringValue": "'sku-42'"}
    stacktrace = _value(attributes["exception.stacktrace"])
    assert stacktrace.startswith("Traceback") and 'raise KeyError("sku-42")' in stacktrace
    assert direct["body"] == {"stringValue": "lookup failed"}
    attributes = _attributes(queued)
    assert _value(attributes["exception.type"]) == "ValueError"
    assert _value(attributes["exception.message"]) == "bad"
    assert _value(attributes["exception.stacktrace"]).endswith("ValueError: bad")


def test_handler_identity_comes_from_the_record_or_the_context_at_capture(
    server, make_client, attach
):
    """LOG-14: the record's distinct id (and ``session_id``) extra, else the identity
    context of the moment; a later change of context changes nothing."""
    client = make_client()
    log = attach(PostHogHandler(client, logs=True))
    with context(distinct_id="ctx-user", session_id="s-1"):
        log.info("from context")
        log.info("from record", extra={"distinct_id": "rec-user", "session_id": "s-2"})
    log.info("no identity")
    assert client.flush(5)
    ctx, rec, none = server.wait_for_log_records(3)
    assert _value(_attributes(ctx)["posthogDistinctId"]) == "ctx-user"
    assert _value(_attributes(ctx)["sessionId"]) == "s-1"
    assert _value(_attributes(rec)["posthogDistinctId"]) == "rec-user"
    assert _value(_attributes(rec)["sessionId"]) == "s-2"
    assert "posthogDistinctId" not in _attributes(none) and "sessionId" not in _attributes(none)
    # The two identified records still became analytics events.
    assert sorted(e["distinct_id"] for e in server.events) == ["ctx-user", "rec-user"]


def test_handler_copies_the_active_span_ids(server, make_client, attach):
    """LOG-32: the OpenTelemetry span active when the record is logged."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    client = make_client()
    log = attach(PostHogHandler(client, logs=True))
    with tracer.start_as_current_span("work") as span:
        log.info("inside")
    assert client.flush(5)
    (record,) = server.wait_for_log_records(1)
    context_ = span.get_span_context()
    assert record["traceId"] == f"{context_.trace_id:032x}"
    assert record["spanId"] == f"{context_.span_id:016x}"


def test_handler_ignores_its_own_and_the_http_stacks_loggers(server, make_client, attach):
    """No feedback loop: the ignored loggers never reach the logs lane either."""
    client = make_client()
    handler = PostHogHandler(client, logs=True)
    attach(handler, "httpx").info("HTTP Request: POST /i/v1/logs")
    attach(handler, "posthog_otel.export").warning("retrying")
    assert client.flush(5)
    assert server.log_records() == [] and client.stats.logs.attempted == 0


def test_dict_config_level_gates_events_and_logs_level_the_logs(server, make_client):
    """``dictConfig`` sets ``level`` after construction (``setLevel``): it stays the
    events' level, the handler still accepts records down to ``logs_level``."""
    client = make_client()
    logging.config.dictConfig(
        {
            "version": 1,
            "incremental": False,
            "disable_existing_loggers": False,
            "handlers": {
                "posthog": {
                    "class": "posthog_otel.PostHogHandler",
                    "level": "ERROR",
                    "logs": True,
                    "logs_level": "DEBUG",
                    "client": client,
                }
            },
            "loggers": {
                "dictlogs": {"handlers": ["posthog"], "level": "DEBUG", "propagate": False}
            },
        }
    )
    log = logging.getLogger("dictlogs")
    try:
        (handler,) = log.handlers
        assert (handler.level, handler.events_level) == (logging.DEBUG, logging.ERROR)
        log.debug("detail", extra={"distinct_id": "u1"})
        log.error("failed", extra={"distinct_id": "u1"})
        assert client.flush(5)
        assert [r["severityNumber"] for r in server.wait_for_log_records(2)] == [5, 17]
        assert [e["event"] for e in server.events] == ["failed"]
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)


# ---------------------------------------------------------------- PostHogProcessor


def _configure(processor):
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            processor,
            lambda logger, method, event_dict: "",
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )


@pytest.mark.usefixtures("_reset_structlog")
def test_processor_ships_every_event_at_or_above_logs_level(server, make_client):
    """Issue #14 item 3 for structlog: ``logs_level`` gates Logs, ``level`` events;
    identity from the event, the bound contextvars or the context (LOG-14); the
    exception as ``exception.*``."""
    client = make_client()
    _configure(PostHogProcessor(client, level="warning", logs=True, logs_level="info"))
    log = structlog.get_logger("shop")
    log.debug("hidden")
    log.info("cart viewed", items=2)
    log.warning("card declined", distinct_id="u1", amount=9.5)
    with context(distinct_id="ctx-user", session_id="s-9"):
        log.error("ctx record")
    try:
        raise ValueError("bad total")
    except ValueError:
        log.exception("checkout crashed")
    assert client.flush(5)
    records = server.wait_for_log_records(4)
    assert [(r["body"]["stringValue"], r["severityNumber"]) for r in records] == [
        ("cart viewed", 9),
        ("card declined", 13),
        ("ctx record", 17),
        ("checkout crashed", 17),
    ]
    viewed, declined, ctx, crashed = (_attributes(r) for r in records)
    assert viewed["items"] == {"intValue": "2"} and "posthogDistinctId" not in viewed
    assert "level" not in viewed and "event" not in viewed
    assert declined["posthogDistinctId"] == {"stringValue": "u1"}
    assert declined["amount"] == {"doubleValue": 9.5}
    assert _value(ctx["posthogDistinctId"]) == "ctx-user" and _value(ctx["sessionId"]) == "s-9"
    assert _value(crashed["exception.type"]) == "ValueError"
    assert _value(crashed["exception.message"]) == "bad total"
    assert "exc_info" not in crashed
    # Only the identified event at WARNING or above became an analytics event (and
    # the context's ERROR record); the personless crash sent its $exception.
    names = sorted(e["event"] for e in server.events)
    assert names == ["$exception", "card declined", "ctx record"]


@pytest.mark.usefixtures("_reset_structlog")
def test_processor_without_logs_sends_no_log_record(server, make_client):
    client = make_client()
    _configure(PostHogProcessor(client))
    structlog.get_logger("shop").info("signed up", distinct_id="u1")
    assert client.flush(5)
    assert len(server.events) == 1 and server.log_records() == []


def test_readme_handler_logs_snippet_sends_as_written(server, make_client):
    """The README's ``PostHogHandler(logs=True)`` example, as written."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Every log record, from `logging` or structlog\n", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    client = make_client()
    log = logging.getLogger("shop")
    handlers, level, propagate = list(log.handlers), log.level, log.propagate
    log.propagate = False
    try:
        exec(compile(snippet, "README.md", "exec"), {"client": client})
        assert client.flush(5)
    finally:
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate
    warmed, declined = server.wait_for_log_records(2)
    assert warmed["body"] == {"stringValue": "cache eu warmed"}
    assert _value(_attributes(declined)["posthogDistinctId"]) == "u1"
    assert [e["event"] for e in server.events] == ["card declined"]


@pytest.mark.usefixtures("_reset_structlog")
@pytest.mark.parametrize("processor_logs", [None, False, True])
def test_handler_logs_structlog_events_rendered_by_processor_formatter_once(
    server, make_client, processor_logs
):
    """structlog's ``ProcessorFormatter`` setup hands the handler the event dict as the
    record's ``msg``. ``PostHogHandler(logs=True)`` sends each such call once: itself
    (the event as body, the dict's values as attributes) when no
    ``PostHogProcessor(logs=True)`` in the chain sent it, else not again."""
    client = make_client()
    root = logging.getLogger()
    handler = PostHogHandler(client, logs=True)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    )
    level, handlers = root.level, list(root.handlers)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    chain: list = [structlog.stdlib.add_log_level]
    if processor_logs is not None:
        chain.append(PostHogProcessor(client, logs=processor_logs))
    structlog.configure(
        processors=[*chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger("shop.struct")
        log.info("cart viewed", items=2)
        log.warning("card declined", distinct_id="u1")
        logging.getLogger("shop.plain").info("plain %s", "record")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert client.flush(5)
    records = server.log_records()
    assert [r["body"]["stringValue"] for r in records] == [
        "cart viewed",
        "card declined",
        "plain record",
    ]
    viewed, declined = (_attributes(r) for r in records[:2])
    assert viewed["items"] == {"intValue": "2"} and "level" not in viewed
    assert declined["posthogDistinctId"] == {"stringValue": "u1"}
    assert [r["severityNumber"] for r in records] == [9, 13, 9]
