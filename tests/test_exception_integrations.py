"""``$exception`` events from the integrations (issue #12): the logging handler, the
request middleware, the span exporter; each path sends each exception exactly once."""

from __future__ import annotations

import gc
import logging
import logging.handlers
import queue
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from posthog_otel import Client, PostHogHandler, context

# File opens seen by an audit hook (which cannot be removed: it records only while a
# test asks it to, and only the paths asked for).
_watched: set[str] = set()
_opens: list[tuple[str, str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _watched and args and str(args[0]) in _watched:
        _opens.append((threading.current_thread().name, str(args[0])))


sys.addaudithook(_audit)


@pytest.fixture
def log_to(make_client) -> Iterator[Any]:
    """``log_to(**handler_options)``: a client and a logger ``app.exc`` feeding a
    ``PostHogHandler`` with those options (removed after the test)."""
    logger = logging.getLogger("app.exc")
    logger.setLevel(logging.DEBUG)
    saved = list(logger.handlers)

    def make(**options: Any) -> tuple[Client, logging.Logger]:
        # Only ours, set in the test's body: pytest attaches its capture handlers (which
        # keep the records, and their tracebacks) to non-propagating loggers when the
        # test's call phase starts.
        logger.propagate = False
        logger.handlers[:] = [PostHogHandler(client := make_client(), **options)]
        return client, logger

    yield make
    logger.handlers[:] = saved
    logger.propagate = True


def _exceptions(server, client) -> list[dict[str, Any]]:
    assert client.flush(5)
    return [e for e in server.events if e["event"] == "$exception"]


def _fail(message: str = "card declined") -> None:
    raise ValueError(message)


# ---------------------------------------------------------------------- logging


def test_logger_exception_becomes_an_exception_event_and_the_event(server, log_to):
    client, log = log_to()
    try:
        _fail()
    except ValueError:
        log.exception("payment_failed", extra={"distinct_id": "u1", "order": 7})
    (exc,) = _exceptions(server, client)
    props = exc["properties"]
    assert exc["distinct_id"] == "u1"
    assert props["$exception_level"] == "error"
    assert props["$exception_source"] == "python.logging"
    mechanism = props["$exception_list"][0]["mechanism"]
    assert mechanism == {"type": "logger", "handled": True, "synthetic": False, "exception_id": 0}
    assert props["$exception_type"] == "ValueError"
    assert props["$exception_message"] == "card declined"
    assert props["$log_message"] == "payment_failed"
    assert props["order"] == 7
    assert props["$logger_name"] == "app.exc"
    frames = props["$exception_list"][0]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "_fail" and "context_line" in frames[-1]
    # The plain analytics event is sent too (the default: dashboards keep counting it).
    assert Counter(server.event_names()) == Counter({"payment_failed": 1, "$exception": 1})


@pytest.mark.parametrize(
    ("level", "expected"),
    [(logging.WARNING, "warning"), (logging.ERROR, "error"), (logging.CRITICAL, "fatal")],
)
def test_record_level_sets_the_exception_level(server, log_to, level, expected):
    client, log = log_to()
    try:
        _fail()
    except ValueError:
        log.log(level, "failed", exc_info=True, extra={"distinct_id": "u1"})
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$exception_level"] == expected
    # A fatal record that does not end the process is still handled (EEM scenario).
    assert exc["properties"]["$exception_list"][0]["mechanism"]["handled"] is True


def test_records_without_identity_send_a_personless_exception_only(server, log_to):
    client, log = log_to()  # personless=False gates the plain events, not exceptions
    try:
        _fail()
    except ValueError:
        log.exception("anonymous_failure")
    log.info("anonymous_info")
    (exc,) = _exceptions(server, client)
    assert exc["properties"]["$process_person_profile"] is False
    assert server.event_names() == ["$exception"]
    (handler,) = log.handlers
    assert handler.skipped == 1  # the info record only


def test_exceptions_switch_and_event_with_exception(server, log_to):
    client, log = log_to(exceptions=False)
    log.error("event_only", exc_info=ValueError("a"), extra={"distinct_id": "u1"})
    (handler,) = log.handlers
    handler.exceptions, handler.event_with_exception = True, False
    log.error("exception_only", exc_info=ValueError("b"), extra={"distinct_id": "u1"})
    assert client.flush(5)
    assert server.event_names() == ["event_only", "$exception"]
    assert server.events[1]["properties"]["$log_message"] == "exception_only"


def test_exc_info_outside_an_except_block_is_a_plain_record(server, log_to):
    client, log = log_to()
    log.error("no_exception", exc_info=True, extra={"distinct_id": "u1"})
    assert client.flush(5)
    assert server.event_names() == ["no_exception"]


def test_traceback_text_behind_a_queue_handler_is_parsed(server, make_client):
    """``QueueHandler.prepare`` renders the traceback into ``exc_text`` and drops
    ``exc_info``: the frames come from that text."""
    client = make_client()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, PostHogHandler(client))
    logger = logging.getLogger("app.queued")
    logger.propagate = False
    handler = logging.handlers.QueueHandler(records)
    logger.addHandler(handler)
    listener.start()
    try:
        try:
            _fail("queued")
        except ValueError:
            logger.exception("failed", extra={"distinct_id": "u1"})
    finally:
        listener.stop()
        logger.removeHandler(handler)
        logger.propagate = True
    (exc,) = _exceptions(server, client)
    entry = exc["properties"]["$exception_list"][0]
    assert entry["type"] == "ValueError" and entry["value"] == "queued"
    assert entry["stacktrace"]["frames"][-1]["function"] == "_fail"


def test_handler_reads_no_source_file_and_keeps_no_frame(server, log_to, tmp_path):
    """The traceback becomes plain data on the logging thread (no frame kept alive
    in the queue) and the source file is read on the flush thread only."""
    source = tmp_path / "failing_module.py"
    source.write_text("def fail(holder):\n    raise ValueError('from a file')\n")
    namespace: dict[str, Any] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)

    class Held:
        pass

    held = Held()
    ref = weakref.ref(held)
    client, log = log_to()
    _watched.add(str(source))
    try:
        try:
            namespace["fail"](held)
        except ValueError:
            log.exception("failed", extra={"distinct_id": "u1"})
        del held
        gc.collect()
        assert ref() is None  # nothing of the failed frame is queued
        assert _opens == []  # nothing read on the logging thread
        (exc,) = _exceptions(server, client)
    finally:
        _watched.discard(str(source))
    frame = exc["properties"]["$exception_list"][0]["stacktrace"]["frames"][-1]
    assert frame["context_line"] == "    raise ValueError('from a file')"
    assert {thread for thread, _ in _opens} == {"posthog_otel-flush"}
    _opens.clear()


def test_identity_context_and_span_ids(server, log_to):
    client, log = log_to()
    with context(distinct_id="ctx-user", session_id="s1"):
        log.error("failed", exc_info=ValueError("x"))
    (exc,) = _exceptions(server, client)
    assert exc["distinct_id"] == "ctx-user"
    assert exc["properties"]["$session_id"] == "s1"
