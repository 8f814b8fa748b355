"""Opt-in autocapture of uncaught exceptions (issue #12): ``sys.excepthook``,
``threading.excepthook`` and asyncio loops, chained, restored on close, and flushed
before the process dies (subprocesses for the real hooks)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import posthog_otel
from posthog_otel import capture_asyncio_exceptions

from .conftest import API_KEY


def _run(server, body: str) -> subprocess.CompletedProcess[bytes]:
    script = textwrap.dedent(
        f"""
        import threading
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600,
                        enable_exception_autocapture=True)
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)


def test_uncaught_in_main_and_worker_thread_arrive_before_exit(server):
    proc = _run(
        server,
        """
        def work():
            raise KeyError("in the worker")

        worker = threading.Thread(target=work, name="worker-1")
        worker.start()
        worker.join()
        raise RuntimeError("in the main thread")
        """,
    )
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    # The previous hooks still ran: both tracebacks are printed.
    assert "RuntimeError: in the main thread" in stderr
    assert "KeyError: 'in the worker'" in stderr
    by_source = {e["properties"]["$exception_source"]: e for e in server.events}
    assert set(by_source) == {"python.sys_excepthook", "python.threading_excepthook"}
    main = by_source["python.sys_excepthook"]["properties"]
    assert main["$exception_level"] == "fatal"
    assert main["$exception_message"] == "in the main thread"
    assert main["$exception_list"][0]["mechanism"]["type"] == "onuncaughtexception"
    assert main["$exception_list"][0]["mechanism"]["handled"] is False
    thread = by_source["python.threading_excepthook"]["properties"]
    assert thread["$exception_level"] == "error"
    assert thread["$thread_name"] == "worker-1"
    assert thread["$exception_list"][0]["mechanism"]["handled"] is False


def test_main_thread_crash_is_flushed_even_with_the_exit_hook_off(server):
    """The excepthook itself flushes: a process that ends at once after it (no atexit
    hook runs) has still sent the exception."""
    proc = _run(
        server,
        """
        import os, sys
        ours = sys.excepthook
        def then_die(*args):  # a hook installed over ours, ending the process hard
            ours(*args)
            os._exit(3)
        sys.excepthook = then_die
        raise ValueError("dies hard")
        """,
    )
    assert proc.returncode == 3
    assert [e["properties"]["$exception_message"] for e in server.events] == ["dies hard"]


def test_without_the_option_nothing_is_chained(make_client):
    hooks = (sys.excepthook, threading.excepthook)
    client = make_client()
    assert (sys.excepthook, threading.excepthook) == hooks
    client.close()


def test_hooks_are_chained_and_restored_on_close(server, make_client, capsys):
    hooks = (sys.excepthook, threading.excepthook)
    first = make_client(enable_exception_autocapture=True)
    second = make_client(enable_exception_autocapture=True)
    assert sys.excepthook is not hooks[0] and threading.excepthook is not hooks[1]
    try:
        raise ValueError("uncaught")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)  # as the interpreter would
    assert "ValueError: uncaught" in capsys.readouterr().err  # passed on
    assert first.flush(5) and second.flush(5)
    assert len(server.events) == 2  # one for each client
    first.close()
    assert sys.excepthook is not hooks[0]  # still one client
    second.close()
    assert (sys.excepthook, threading.excepthook) == hooks


def test_asyncio_loop_exceptions(server, make_client):
    client = make_client(enable_exception_autocapture=True)
    seen: list[dict] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        capture_asyncio_exceptions()
        try:
            raise ConnectionError("lost in a callback")
        except ConnectionError as exc:
            loop.call_exception_handler({"message": "callback failed", "exception": exc})
        loop.call_exception_handler({"message": "no exception here"})

    asyncio.run(main())
    assert [c["message"] for c in seen] == ["callback failed", "no exception here"]  # chained
    assert client.flush(5)
    (event,) = server.events
    props = event["properties"]
    assert props["$exception_source"] == "python.asyncio"
    assert props["$exception_level"] == "error"
    assert props["$asyncio_message"] == "callback failed"
    assert props["$exception_list"][0]["mechanism"]["handled"] is False
    client.close()


def test_asyncio_handler_restored_on_close(make_client):
    client = make_client(enable_exception_autocapture=True)
    loop = asyncio.new_event_loop()
    try:

        def previous(_loop, _context):
            pass

        loop.set_exception_handler(previous)
        capture_asyncio_exceptions(loop)
        assert loop.get_exception_handler() is not previous
        client.close()
        assert loop.get_exception_handler() is previous
    finally:
        loop.close()


def test_exported_from_the_package():
    assert posthog_otel.capture_asyncio_exceptions is capture_asyncio_exceptions
