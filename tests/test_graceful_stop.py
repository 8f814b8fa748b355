"""Graceful stop (issue #10 item 1): the ASGI lifespan flushes, a process dying of SIGTERM
flushes first, and nothing replaces a signal handler that someone else installed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from posthog_otel.middleware import PostHogASGIMiddleware

from .conftest import API_KEY


async def _run_lifespan(app: Any, server_events: Any) -> list[tuple[str, int]]:
    """Drive a lifespan as a server does; what was sent, with the number of events the
    fake server had received at that moment."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[tuple[str, int]] = []

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], len(server_events)))

    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    )
    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 10)
    return sent


def test_lifespan_shutdown_flushes_before_the_server_is_told(server, make_client):
    client = make_client()
    seen = []

    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                client.capture("app_stopping", "u")  # during the app's own shutdown
                await send({"type": "lifespan.shutdown.complete"})
                return

    client.capture("served", "u")
    sent = asyncio.run(_run_lifespan(PostHogASGIMiddleware(app), server.events))
    assert seen == ["lifespan.startup", "lifespan.shutdown"]  # passed through
    assert sent == [("lifespan.startup.complete", 0), ("lifespan.shutdown.complete", 2)]
    assert sorted(server.event_names()) == ["app_stopping", "served"]


def test_lifespan_is_served_for_an_app_without_lifespan_support(server, make_client):
    client = make_client()

    async def app(scope, receive, send):  # Django's ASGIHandler does this
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    client.capture("served", "u")
    sent = asyncio.run(_run_lifespan(PostHogASGIMiddleware(app), server.events))
    assert sent == [("lifespan.startup.complete", 0), ("lifespan.shutdown.complete", 1)]


def test_lifespan_failure_of_the_app_goes_to_the_server(make_client):
    async def app(scope, receive, send):
        await receive()
        raise RuntimeError("startup failed")

    with pytest.raises(RuntimeError, match="startup failed"):
        asyncio.run(_run_lifespan(PostHogASGIMiddleware(app), []))


def _run_script(body: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(body)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_flushes_then_dies_of_the_signal(server):
    proc = _run_script(
        f"""
        import sys, threading
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        for i in range(50):
            client.capture("before_sigterm", "u", {{"i": i}})
        print("ready", flush=True)
        threading.Event().wait(60)
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM  # still dies of the signal
    assert sorted(e["properties"]["i"] for e in server.events) == list(range(50))


def test_sigterm_handler_is_installed_only_over_the_default():
    proc = _run_script(
        f"""
        import signal, threading
        from posthog_otel import Client
        from posthog_otel._shutdown import _on_sigterm

        def state():
            handler = signal.getsignal(signal.SIGTERM)
            if handler is _on_sigterm:
                return "ours"
            return "default" if handler is signal.SIG_DFL else "theirs"

        def mine(signum, frame):
            pass

        host = "http://127.0.0.1:9"  # nothing listens: each client gives up at exit
        Client({API_KEY!r}, host=host, flush_on_sigterm=False).capture("e", "u")
        print(state())
        Client({API_KEY!r}, host=host).capture("e", "u")  # POSTHOG_FLUSH_ON_SIGTERM=0
        print(state())

        def capture():
            Client({API_KEY!r}, host=host, flush_on_sigterm=True).capture("e", "u")

        thread = threading.Thread(target=capture)
        thread.start(); thread.join()
        print(state())  # not from another thread
        signal.signal(signal.SIGTERM, mine)
        Client({API_KEY!r}, host=host, flush_on_sigterm=True).capture("e", "u")
        print(state())  # a handler someone installed stays
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        client = Client({API_KEY!r}, host=host, flush_on_sigterm=True, shutdown_timeout=0.5)
        client.capture("e", "u")
        print(state(), flush=True)
        import os
        os._exit(0)  # no exit flush towards a port where nothing listens
        """,
        env={"POSTHOG_FLUSH_ON_SIGTERM": "0"},
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert out.split() == [b"default", b"default", b"default", b"theirs", b"ours"], err.decode()


def test_a_framework_that_saved_our_handler_calls_it_when_it_re_raises(server):
    """uvicorn's way: save the handlers, install its own while serving, restore them and
    raise the signal again after its graceful shutdown."""
    proc = _run_script(
        f"""
        import signal, threading
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        client.capture("before_serving", "u")  # installs our handler
        stop = threading.Event()
        saved = signal.signal(signal.SIGTERM, lambda s, f: stop.set())
        print("ready", flush=True)
        stop.wait(60)
        client.capture("during_graceful_shutdown", "u")
        signal.signal(signal.SIGTERM, saved)
        signal.raise_signal(signal.SIGTERM)  # ours flushes, then ends the process
        threading.Event().wait(30)
        print("not reached", flush=True)
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert b"not reached" not in out
    assert sorted(server.event_names()) == ["before_serving", "during_graceful_shutdown"]


def test_flush_on_exit_before_os_exit(server):
    proc = _run_script(
        f"""
        import os
        import posthog_otel
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        for i in range(20):
            client.capture("queued", "u", {{"i": i}})
        print(posthog_otel.flush_on_exit(), flush=True)
        client.capture("after", "u")  # sent at once: the process is ending
        os._exit(0)  # no atexit
        """
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert out.strip() == b"True"
    assert server.event_names() == ["queued"] * 20 + ["after"]


def test_sigterm_while_the_main_thread_captures_in_a_loop(server):
    """The handler interrupts the main thread anywhere, also inside the queue's lock: the
    flush runs on a helper thread and the handler returns, so it never waits for a lock
    that the interrupted thread holds; the process dies of SIGTERM once it is done."""
    proc = _run_script(
        f"""
        from posthog_otel import Client
        # A queue that cannot fill before the signal lands, however late (under load the
        # loop may run a while first): a full queue's counted drops would read as a gap.
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600,
                        flush_at=10**6, max_queue_size=10**7)
        i = 0
        while True:
            client.capture("loop", "u", {{"i": i}})
            i += 1
            if i == 200:
                print("ready", flush=True)
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    received = sorted(e["properties"]["i"] for e in server.events)
    assert len(received) >= 200
    assert received == list(range(len(received)))  # in order, nothing missing or twice


def test_a_handler_installed_after_ours_that_hands_the_signal_on_runs_once(server):
    """An application (or library) handler installed after ours that does its clean-up and
    then calls the handler it replaced, expecting the default's end: ours flushes and the
    process dies of SIGTERM, without that handler being run a second time by the signal
    ours sends again once the flush is done."""
    proc = _run_script(
        f"""
        import signal, threading
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=3600)
        client.capture("before_sigterm", "u")  # installs our handler
        previous = signal.getsignal(signal.SIGTERM)

        def application_handler(signum, frame):
            print("application handler", flush=True)
            previous(signum, frame)

        signal.signal(signal.SIGTERM, application_handler)
        print("ready", flush=True)
        threading.Event().wait(60)
        print("not reached", flush=True)
        """
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert out.splitlines() == [b"application handler"]
    assert server.event_names() == ["before_sigterm"]


@pytest.mark.parametrize("ending", ["raises", "returns"])
def test_lifespan_shutdown_that_fails_without_telling_the_server_still_flushes(
    server, make_client, ending
):
    """An application whose shutdown raises (or returns) without sending
    ``lifespan.shutdown.complete`` or ``.failed``: uvicorn logs it and then re-raises
    SIGTERM, so no atexit hook runs; the clients are flushed before the error goes on."""
    client = make_client()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        client.capture("app_stopping", "u")
        if ending == "raises":
            raise RuntimeError("shutdown failed")

    client.capture("served", "u")
    if ending == "raises":
        with pytest.raises(RuntimeError, match="shutdown failed"):
            asyncio.run(_run_lifespan(PostHogASGIMiddleware(app), server.events))
    else:
        asyncio.run(_run_lifespan(PostHogASGIMiddleware(app), server.events))
    assert sorted(server.event_names()) == ["app_stopping", "served"]
