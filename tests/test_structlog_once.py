"""structlog events arrive exactly once in every setup structlog documents, with
``PostHogProcessor`` in the structlog chain and ``PostHogHandler`` on the root logger; the
processor's marker never suppresses a stdlib record it was not set for (issue #10)."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.handlers
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from posthog_otel import Client, PostHogHandler, PostHogProcessor, context

SETUPS = [
    "print_logger",  # pure structlog, nothing reaches stdlib
    "write_logger",
    "processor_formatter",  # structlog.stdlib.ProcessorFormatter on the stdlib handlers
    "render_to_log_kwargs",  # the event dict becomes the record's msg and extras
    "json_to_stdlib",  # rendered within structlog: the record's msg is the JSON
    "keyvalue_to_stdlib",
]
QUIET = "app.quiet"  # its stdlib logger is at WARNING: its info records never reach a handler


def _configure(
    setup: str, client: Client, root: logging.Logger, extra: list[Any], logs: bool = False
) -> None:
    """structlog and the root logger as the structlog docs show for ``setup``."""
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        PostHogProcessor(client, logs=logs),
        *extra,
    ]
    if setup in ("print_logger", "write_logger"):
        factory: Any = (
            structlog.PrintLoggerFactory(file=io.StringIO())
            if setup == "print_logger"
            else structlog.WriteLoggerFactory(file=io.StringIO())
        )
        final: Any = (
            structlog.processors.JSONRenderer()
            if setup == "print_logger"
            else structlog.processors.KeyValueRenderer()
        )
        structlog.configure(
            processors=[*chain, final],
            logger_factory=factory,
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=False,
        )
        return
    finals: dict[str, Any] = {
        "processor_formatter": structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        "render_to_log_kwargs": structlog.stdlib.render_to_log_kwargs,
        "json_to_stdlib": structlog.processors.JSONRenderer(),
        "keyvalue_to_stdlib": structlog.processors.KeyValueRenderer(key_order=["event"]),
    }
    if setup == "processor_formatter":
        console = logging.StreamHandler(io.StringIO())
        console.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processor=structlog.processors.JSONRenderer(),
                foreign_pre_chain=[structlog.processors.add_log_level],
            )
        )
        root.addHandler(console)
    structlog.configure(
        processors=[*chain, finals[setup]],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


@pytest.fixture
def install(make_client: Callable[..., Client]) -> Iterator[Callable[..., Client]]:
    """``install(setup)``: a client, structlog configured for ``setup`` and a
    ``PostHogHandler`` on the root logger at INFO; all undone after the test."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    quiet = logging.getLogger(QUIET)

    def install(
        setup: str,
        *,
        extra: list[Any] | None = None,
        handler: Callable[[Client], logging.Handler] = PostHogHandler,
        logs: bool = False,
    ) -> Client:
        client = make_client()
        root.setLevel(logging.INFO)
        quiet.setLevel(logging.WARNING)
        root.addHandler(PostHogHandler(client, logs=True) if logs else handler(client))
        _configure(setup, client, root, extra or [], logs)
        return client

    yield install
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.setLevel(level)
    root.handlers[:] = handlers
    quiet.setLevel(logging.NOTSET)


def _events(client: Client, server: Any) -> Counter[tuple[str, str, str]]:
    assert client.flush(5)
    return Counter(
        (e["event"], e["distinct_id"], e["properties"].get("source", "?")) for e in server.events
    )


def _no_drops(client: Client) -> None:
    stats = client.stats
    assert not any(stats.dropped.values()), stats.dropped


@pytest.mark.parametrize("setup", SETUPS)
def test_each_structlog_event_arrives_once_and_same_text_stdlib_records_too(setup, install, server):
    client = install(setup)
    log = structlog.get_logger("app.struct")
    std = logging.getLogger("app.plain")
    with context(distinct_id="ctx-user"):
        log.info("in_context", source="structlog")
        # A later, unrelated stdlib record with the same text is its own event.
        std.info("in_context", extra={"source": "stdlib"})
        # A captured structlog call whose record reaches no handler...
        structlog.get_logger(QUIET).info("quiet_event", source="structlog")
        # ...marks nothing for the next stdlib record.
        std.info("quiet_event", extra={"source": "stdlib"})
    log.bind(distinct_id="bound-user").info("bound_on_logger", source="structlog")
    log.info("explicit_kwarg", distinct_id="kw-user", source="structlog")
    with structlog.contextvars.bound_contextvars(distinct_id="cv-user"):
        log.info("contextvars_bound", source="structlog")
    log.info("no_identity", source="structlog")
    std.info("explicit_kwarg", extra={"distinct_id": "kw-user", "source": "stdlib"})

    assert _events(client, server) == Counter(
        {
            ("in_context", "ctx-user", "structlog"): 1,
            ("in_context", "ctx-user", "stdlib"): 1,
            ("quiet_event", "ctx-user", "structlog"): 1,
            ("quiet_event", "ctx-user", "stdlib"): 1,
            ("bound_on_logger", "bound-user", "structlog"): 1,
            ("explicit_kwarg", "kw-user", "structlog"): 1,
            ("explicit_kwarg", "kw-user", "stdlib"): 1,
            ("contextvars_bound", "cv-user", "structlog"): 1,
        }
    )
    _no_drops(client)


@pytest.mark.parametrize("setup", SETUPS)
def test_with_logs_on_both_each_structlog_call_is_one_log_record(setup, install, server):
    """Issue #14: ``PostHogProcessor(logs=True)`` and ``PostHogHandler(logs=True)`` both
    active, structlog routed through stdlib: each structlog call is one log record (the
    processor's), with or without an analytics event, and a stdlib record with the same
    text is its own record."""
    client = install(setup, logs=True)
    log = structlog.get_logger("app.struct")
    std = logging.getLogger("app.plain")
    with context(distinct_id="ctx-user"):
        log.info("identified", source="structlog")  # an event and a log record
        std.info("identified")  # the same text: its own log record (and event)
    log.info("anonymous", source="structlog")  # no identity: a log record only
    log.warning("warned", source="structlog")
    structlog.get_logger(QUIET).info("quiet", source="structlog")  # reaches no handler
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("crashed", source="structlog")
    std.info("plain")
    assert client.flush(5)
    bodies = Counter(next(iter(r["body"].values())) for r in server.log_records())
    assert bodies == Counter(
        {"identified": 2, "anonymous": 1, "warned": 1, "quiet": 1, "crashed": 1, "plain": 1}
    )
    logs = client.stats.logs
    assert logs.sent == 7 and not any(logs.dropped.values()), logs
    events = Counter(e["event"] for e in server.events)
    assert events["identified"] == 2 and events["anonymous"] == 0
    _no_drops(client)


@pytest.mark.parametrize("setup", SETUPS)
def test_exactly_once_across_threads(setup, install, server):
    client = install(setup)
    log, quiet = structlog.get_logger("app.struct"), structlog.get_logger(QUIET)
    std = logging.getLogger("app.plain")
    threads, rounds = 6, 15
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait(5)
        for i in range(rounds):
            with context(distinct_id=f"t{n}"):
                log.info("tick", source="structlog", i=i)
                quiet.info("tock", source="structlog", i=i)
                std.info("tock", extra={"source": "stdlib"})

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)

    expected: Counter[tuple[str, str, str]] = Counter()
    for n in range(threads):
        expected[("tick", f"t{n}", "structlog")] = rounds
        expected[("tock", f"t{n}", "structlog")] = rounds
        expected[("tock", f"t{n}", "stdlib")] = rounds
    assert _events(client, server) == expected
    _no_drops(client)


@pytest.mark.parametrize("setup", SETUPS)
def test_exactly_once_across_asyncio_tasks(setup, install, server):
    client = install(setup)
    log, quiet = structlog.get_logger("app.struct"), structlog.get_logger(QUIET)
    std = logging.getLogger("app.plain")

    async def task(n: int) -> None:
        with context(distinct_id=f"a{n}"):
            for i in range(5):
                log.info("sync_call", source="structlog", i=i)
                await asyncio.sleep(0)  # the other tasks log in between
                std.info("sync_call", extra={"source": "stdlib"})
                await log.ainfo("async_call", source="structlog", i=i)
                quiet.info("quiet_call", source="structlog", i=i)
                await asyncio.sleep(0)
                std.info("quiet_call", extra={"source": "stdlib"})

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(4)))

    asyncio.run(main())
    expected: Counter[tuple[str, str, str]] = Counter()
    for n in range(4):
        for key in (
            ("sync_call", "structlog"),
            ("sync_call", "stdlib"),
            ("async_call", "structlog"),
            ("quiet_call", "structlog"),
            ("quiet_call", "stdlib"),
        ):
            expected[(key[0], f"a{n}", key[1])] = 5
    assert _events(client, server) == expected
    _no_drops(client)


@pytest.mark.parametrize("setup", ["render_to_log_kwargs", "json_to_stdlib"])
def test_a_stdlib_record_logged_from_inside_the_chain_is_not_taken_for_the_call(
    setup, install, server
):
    """A processor after PostHogProcessor that logs with stdlib (the same text, even)
    while the structlog call is running: that record is its own event, and the call's
    own record is still skipped."""

    def auditing(logger: Any, method: str, event_dict: Any) -> Any:
        logging.getLogger("app.audit").info(event_dict["event"], extra={"source": "nested"})
        return event_dict

    client = install(setup, extra=[auditing])
    with context(distinct_id="u"):
        structlog.get_logger("app.struct").info("checkout", source="structlog")
    assert _events(client, server) == Counter(
        {("checkout", "u", "structlog"): 1, ("checkout", "u", "nested"): 1}
    )


def test_the_structlog_docs_stdlib_chain_with_cached_loggers_and_exceptions(install, server):
    """structlog's documented "rendering within structlog" chain, loggers cached on
    first use, and ``log.exception`` (structlog calls itself: more frames of its own)."""
    client = install("json_to_stdlib")
    processor = next(
        p for p in structlog.get_config()["processors"] if isinstance(p, PostHogProcessor)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.TimeStamper(fmt="iso"),
            processor,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.UnicodeDecoder(),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    log = structlog.stdlib.get_logger("app.docs")
    with context(distinct_id="u"):
        for _ in range(3):
            log.info("looped", source="structlog")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", source="structlog")
        logging.getLogger("app.plain").error("failed", extra={"source": "stdlib"})
    assert _events(client, server) == Counter(
        {
            ("looped", "u", "structlog"): 3,
            ("failed", "u", "structlog"): 1,
            ("$exception", "u", "structlog"): 1,  # log.exception: also error tracking
            ("failed", "u", "stdlib"): 1,
        }
    )


@pytest.mark.parametrize("setup", ["render_to_log_kwargs", "json_to_stdlib"])
def test_once_when_logging_is_patched_by_another_library(setup, install, server, monkeypatch):
    """Error trackers (sentry-sdk's logging integration, say) wrap
    ``Logger.callHandlers``: their frame between structlog's and the handler's does not
    hide the call."""
    original = logging.Logger.callHandlers

    def patched_call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        return original(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", patched_call_handlers)
    client = install(setup)
    with context(distinct_id="u"):
        structlog.get_logger("app.struct").info("signed_up", source="structlog")
        logging.getLogger("app.plain").info("signed_up", extra={"source": "stdlib"})
    assert _events(client, server) == Counter(
        {("signed_up", "u", "structlog"): 1, ("signed_up", "u", "stdlib"): 1}
    )


def test_behind_a_queue_handler_records_are_handled_as_any_record(server, install):
    """Documented: behind ``QueueHandler``/``QueueListener`` the handler runs on the
    listener's thread, where neither the marker nor the identity context is set; a
    record is captured there only by its own extras. A structlog event rendered to a
    string inside an identity context arrives once (from the processor) and a stdlib
    record with the same text is never suppressed."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listeners: list[logging.handlers.QueueListener] = []

    def queued(client: Client) -> logging.Handler:
        listeners.append(logging.handlers.QueueListener(records, PostHogHandler(client)))
        return logging.handlers.QueueHandler(records)

    client = install("json_to_stdlib", handler=queued)
    (listener,) = listeners
    listener.start()
    try:
        with context(distinct_id="u"):
            structlog.get_logger("app.struct").info("paid", source="structlog")
        logging.getLogger("app.plain").info("paid", extra={"distinct_id": "u", "source": "stdlib"})
    finally:
        listener.stop()
    assert _events(client, server) == Counter(
        {("paid", "u", "structlog"): 1, ("paid", "u", "stdlib"): 1}
    )


def test_a_processor_called_outside_structlog_marks_nothing(server, make_client):
    """Called by hand (no structlog call on the stack), the processor captures the event
    and leaves no marker for the next stdlib record with the same text."""
    client = make_client()
    std = logging.getLogger("app.by_hand")
    std.setLevel(logging.INFO)
    std.propagate = False
    std.addHandler(handler := PostHogHandler(client))
    try:
        PostHogProcessor(client)(None, "info", {"event": "by_hand", "distinct_id": "u"})
        std.info("by_hand", extra={"distinct_id": "u"})
    finally:
        std.removeHandler(handler)
        std.propagate = True
        std.setLevel(logging.NOTSET)
    assert client.flush(5)
    assert server.event_names() == ["by_hand", "by_hand"]


@pytest.mark.parametrize("setup", ["json_to_stdlib", "render_to_log_kwargs"])
def test_a_chain_without_the_processor_at_the_same_call_site_is_not_skipped(setup, install, server):
    """A structlog logger whose own chain has no ``PostHogProcessor`` (a library's
    ``wrap_logger``), called from the very line that just made a captured call: its
    stdlib record is the handler's to send, not the captured call's."""
    client = install(setup)
    captured = structlog.get_logger("app.struct")
    plain = structlog.wrap_logger(
        logging.getLogger("app.library"),
        processors=[structlog.stdlib.render_to_log_kwargs],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    with context(distinct_id="ctx-user"):
        for log, source in ((captured, "structlog"), (plain, "stdlib")):
            log.info("same_site", source=source)  # one call site, one instruction
    assert _events(client, server) == Counter(
        {("same_site", "ctx-user", "structlog"): 1, ("same_site", "ctx-user", "stdlib"): 1}
    )
    _no_drops(client)


# ---------------------------------------------------------------------- exceptions (#12)

FORMATTERS = {
    "none": [],
    "format_exc_info": [structlog.processors.format_exc_info],
    "dict_tracebacks": [structlog.processors.dict_tracebacks],
}


def _exception_events(client: Client, server: Any) -> list[dict[str, Any]]:
    assert client.flush(5)
    return [e for e in server.events if e["event"] == "$exception"]


@pytest.mark.parametrize("formatter", sorted(FORMATTERS))
@pytest.mark.parametrize("setup", SETUPS)
def test_each_logged_exception_is_one_exception_event(setup, formatter, install, server):
    """``log.exception``, ``exc_info=True`` and an exception instance, in every
    documented setup, with the traceback rendered after the processor or not: one
    ``$exception`` each (and one plain event each), never a second from the handler."""
    client = install(setup, extra=FORMATTERS[formatter])
    log = structlog.get_logger("app.struct")
    with context(distinct_id="u"):
        try:
            raise ValueError("one")
        except ValueError:
            log.exception("failed_one", source="structlog")
        try:
            raise KeyError("two")
        except KeyError:
            log.error("failed_two", exc_info=True, source="structlog")
        log.error("failed_three", exc_info=RuntimeError("three"), source="structlog")
    log.exception("no_identity", exc_info=ValueError("personless"))  # no identity: personless
    exceptions = _exception_events(client, server)
    assert sorted(e["properties"]["$exception_message"] for e in exceptions) == [
        "'two'",
        "one",
        "personless",
        "three",
    ]
    for event in exceptions:
        props = event["properties"]
        assert props["$exception_source"] == "structlog.processor"
        assert props["$exception_level"] == "error"
        mechanism = props["$exception_list"][0]["mechanism"]
        assert mechanism["type"] == "logger" and mechanism["handled"] is True
    by_message = {e["properties"]["$exception_message"]: e for e in exceptions}
    assert by_message["one"]["distinct_id"] == "u"
    assert by_message["one"]["properties"]["$log_message"] == "failed_one"
    assert by_message["one"]["properties"]["source"] == "structlog"
    frames = by_message["one"]["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "test_each_logged_exception_is_one_exception_event"
    assert "context_line" in frames[-1]  # read on the flush thread
    assert by_message["personless"]["properties"]["$process_person_profile"] is False
    names = Counter(e["event"] for e in server.events)
    assert names["failed_one"] == names["failed_two"] == names["failed_three"] == 1
    assert names["no_identity"] == 0  # the plain event still needs an identity
    _no_drops(client)


def test_processor_exception_switches(install, server):
    client = install("print_logger")
    processor = next(
        p for p in structlog.get_config()["processors"] if isinstance(p, PostHogProcessor)
    )
    log = structlog.get_logger("app.struct")
    processor.event_with_exception = False
    log.error("only_exception", exc_info=ValueError("a"), distinct_id="u")
    processor.exceptions = False
    log.error("only_event", exc_info=ValueError("b"), distinct_id="u")
    assert client.flush(5)
    assert sorted(server.event_names()) == ["$exception", "only_event"]


@pytest.mark.parametrize("renderer", ["format_exc_info", "dict_tracebacks"])
@pytest.mark.parametrize("setup", ["print_logger", "render_to_log_kwargs", "json_to_stdlib"])
def test_exception_rendered_before_the_processor_is_parsed(setup, renderer, install, server):
    """``format_exc_info``/``dict_tracebacks`` placed before the processor leave only the
    rendered ``exception`` key: its frames are parsed from it (CEX-08: a real stack)."""
    client = install(setup)
    processors = list(structlog.get_config()["processors"])
    index = next(i for i, p in enumerate(processors) if isinstance(p, PostHogProcessor))
    processors.insert(index, FORMATTERS[renderer][0])
    structlog.configure(processors=processors)

    def inner():
        raise ValueError("rendered")

    def outer():
        try:
            inner()
        except ValueError as exc:
            raise RuntimeError("wrapper") from exc

    log = structlog.get_logger("app.struct")
    try:
        outer()
    except RuntimeError:
        log.exception("failed", distinct_id="u")
    (event,) = _exception_events(client, server)
    exc_list = event["properties"]["$exception_list"]
    assert [e["type"] for e in exc_list] == ["RuntimeError", "ValueError"]
    assert exc_list[1]["mechanism"]["source"] == "cause"
    assert [f["function"] for f in exc_list[1]["stacktrace"]["frames"]][-2:] == ["outer", "inner"]
    assert exc_list[1]["stacktrace"]["frames"][-1]["context_line"].strip() == (
        'raise ValueError("rendered")'
    )
    assert Counter(server.event_names())["failed"] == 1
