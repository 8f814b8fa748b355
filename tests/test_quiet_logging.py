"""Quiet by default, verbose on request (issue #10, item 6): our uploads never show up
in httpx/httpcore log records, ``debug=True`` logs every batch, retry and drop, and drop
warnings report the true number of events dropped."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import httpx
import pytest

from posthog_otel._log import RateLimitedWarner, debug_state
from posthog_otel._stats import StatsRecorder

HTTP_NAMES = ("httpx", "httpcore")


def http_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.split(".")[0] in HTTP_NAMES]


def test_our_uploads_leave_no_httpx_records_but_the_users_requests_do(server, make_client, caplog):
    caplog.set_level(logging.INFO)  # the root logger at INFO, as many applications run
    caplog.set_level(logging.DEBUG, logger="httpcore")
    background = make_client()
    inline = make_client(sync_mode=True)  # sends on this (the caller's) thread
    background.capture("from_thread", "u1")
    assert background.flush()
    inline.capture("inline", "u1")
    assert background.get_feature_flag("any", "u1") is None  # a /flags request here too
    assert sorted(server.event_names()) == ["from_thread", "inline"]
    assert http_records(caplog) == []

    httpx.get(server.url + "/flags/definitions")  # the application's own request
    assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in caplog.records)
    assert any(r.name.startswith("httpcore.") for r in caplog.records)


def test_debug_logs_every_batch_and_retry(server, make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    client = make_client(debug=True)
    server.fail_next(1, 503)
    client.capture("one", "u1")
    assert client.flush()
    messages = [r.getMessage() for r in caplog.records if r.name == "posthog_otel"]
    batches = [m for m in messages if m.startswith("batch of 1 event(s)")]
    assert len(batches) == 2, messages
    assert "HTTP 503" in batches[0] and "HTTP 200" in batches[1]
    assert " bytes: " in batches[1] and batches[1].endswith(" ms")
    assert any(m.startswith("retrying 1 event(s) in ") for m in messages), messages


def test_debug_adds_a_stderr_handler_when_nothing_would_show_it(server):
    code = (
        "from posthog_otel import Client\n"
        f"c = Client('phc_test_key_0123456789', host={server.url!r}, debug=True)\n"
        "c.capture('one', 'u1')\n"
        "c.opt_out()\n"
        "c.capture('two', 'u1')\n"
        "c.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "posthog_otel DEBUG: batch of 1 event(s)" in done.stderr
    assert "HTTP 200" in done.stderr
    assert "dropped 1 event(s): opted_out" in done.stderr


def test_intentional_drops_are_debug_not_warning(make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    client = make_client(before_send=lambda event: None, debug=True)
    assert client.capture("filtered", "u1") is None
    client.opt_out()
    assert client.capture("opted", "u1") is None
    ours = [r for r in caplog.records if r.name == "posthog_otel" and "dropped" in r.msg]
    assert [r.levelno for r in ours] == [logging.DEBUG, logging.DEBUG]
    assert client.capture("opted_again", "u1") is None  # debug=True: every drop
    ours = [r for r in caplog.records if r.name == "posthog_otel" and "dropped" in r.msg]
    assert [r.levelno for r in ours] == [logging.DEBUG] * 3
    assert client.stats.dropped["before_send"] == 1
    assert client.stats.dropped["opted_out"] == 2


@pytest.mark.parametrize("verbose", [False, True])
def test_rate_limited_drop_warning_counts_every_event_since_the_last(caplog, verbose):
    caplog.set_level(logging.DEBUG, logger="posthog_otel")
    debug_state.verbose = verbose  # what debug=True sets
    stats = StatsRecorder()
    stats.warner = RateLimitedWarner(interval=0.5)  # generous: calls 1-3 fall inside it
    stats.drop("queue_full", 1)
    stats.drop("queue_full", 2)
    stats.drop("queue_full", 3)
    deadline = time.monotonic() + 0.55
    while time.monotonic() < deadline:  # let the interval pass (nothing to wait on)
        time.sleep(0.01)
    stats.drop("queue_full", 4)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "dropped 1 event(s): queue_full",
        "dropped 9 event(s): queue_full (in all, since the last warning)",
    ]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    # Under debug=True every drop in between is logged at DEBUG; otherwise nothing is.
    expected = ["dropped 2 event(s): queue_full", "dropped 3 event(s): queue_full"]
    assert debug == (expected if verbose else [])
    assert stats.dropped["queue_full"] == 10
