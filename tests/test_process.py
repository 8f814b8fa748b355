"""Process-level behaviour: fork, interpreter exit, import cost."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from posthog_otel import Client

from .conftest import API_KEY


def _child_work(client: Client, result: multiprocessing.Queue) -> None:
    uuid = client.capture("from_child", "child")
    result.put((uuid, client.flush(10), client.stats.queued, client.stats.sent))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_fresh_queue_and_thread(server):
    client = Client(API_KEY, host=server.url, flush_interval=60.0)
    client.capture("before_fork", "parent")  # queued in the parent, not yet sent
    client.flush(5)
    server.reset()
    client.capture("parent_pending", "parent")
    ctx = multiprocessing.get_context("fork")
    result = ctx.Queue()
    child = ctx.Process(target=_child_work, args=(client, result))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    uuid, delivered, queued, sent = result.get(timeout=5)
    assert uuid and delivered and queued == 0
    assert sent == 1  # the child's counters do not include the parent's event
    assert server.event_names() == ["from_child"]  # the child did not resend the parent's
    assert client.flush(5)
    assert sorted(server.event_names()) == ["from_child", "parent_pending"]
    client.capture("parent_after", "parent")
    assert client.flush(5)
    assert server.event_names()[-1] == "parent_after"
    client.close()


def test_events_are_flushed_at_interpreter_exit(server):
    script = textwrap.dedent(
        f"""
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        for i in range(50):
            client.capture("exit_event", "u", {{"i": i}})
        # no flush, no close: the exit hook delivers
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [e["properties"]["i"] for e in server.events] == list(range(50))


def test_exit_does_not_hang_when_server_is_down():
    """Nothing listens and the client would retry for minutes: the exit hook still ends
    within ``shutdown_timeout`` (measured inside the process, by an ``atexit`` hook
    registered before ours, which therefore runs after it), and reports the loss."""
    script = textwrap.dedent(
        f"""
        import atexit, sys, time
        marks = {{}}
        atexit.register(
            lambda: sys.stderr.write(f"exit took {{time.monotonic() - marks['end']:.3f}} s\\n")
        )
        from posthog_otel import Client
        client = Client(
            {API_KEY!r}, host="http://127.0.0.1:9", shutdown_timeout=1.0, max_retries=10
        )
        client.capture("lost", "u")
        marks["end"] = time.monotonic()
        """
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    wall = time.monotonic() - started
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert "shutdown" in stderr  # the loss is reported, not silent
    measured = re.search(r"exit took ([0-9.]+) s", stderr)
    assert measured, stderr
    took = float(measured.group(1))
    assert took < 3 * 1.0, stderr  # generous: the exit hook keeps shutdown_timeout
    assert wall < 20, wall  # interpreter start and end included


def test_import_is_light():
    script = (
        "import sys, posthog_otel; "
        "heavy = [m for m in ('httpx', 'orjson', 'opentelemetry', 'structlog', 'openfeature') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert out.stdout.strip() == b"[]"
    script = "import sys; from posthog_otel import Client; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True)
    assert out.stdout.strip() == b"False"
