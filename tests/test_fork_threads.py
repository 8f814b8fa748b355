"""Fork-proof background threads (issue #10 item 2): our threads import nothing (what
they need is imported where the client is made), and a fork waits until no thread is
inside the exporter's queue lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from posthog_otel._fork import no_fork_during

from .conftest import API_KEY


def test_our_threads_import_nothing(server):
    """A fork during an import on another thread leaves the child a half-imported module
    whose lock nobody releases (the gunicorn --preload hang): so sending, retrying after
    a Retry-After date and suppressing instrumentation import nothing on our threads."""
    script = textwrap.dedent(
        f"""
        import sys, threading
        imported = []

        def hook(event, args):
            if event == "import" and threading.current_thread().name.startswith("posthog_otel"):
                imported.append(args[0])

        sys.addaudithook(hook)
        from posthog_otel import Client
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=60)
        client.capture("first", "u")
        assert client.flush(10)
        client.capture("second", "u")
        assert client.flush(10)
        print(sorted(set(imported)))
        """
    )
    server.fail_next(1, 503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", path="/batch/")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.strip() == b"[]"
    assert server.event_names() == ["first", "second"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_for_the_queue_lock_and_the_child_gets_it_free(make_client):
    client = make_client()
    client.capture("e", "u")  # the flush thread runs
    lock = client._exporter._lock
    holding, release, forked = threading.Event(), threading.Event(), threading.Event()
    statuses: list[int] = []

    def holder() -> None:
        with lock:  # another thread inside the critical section
            holding.set()
            release.wait(10)

    def forker() -> None:
        pid = os.fork()
        if pid == 0:  # the child: the queue lock is free and the client works
            ok = lock.acquire(timeout=2)
            os._exit(0 if ok else 1)
        forked.set()
        statuses.append(os.waitpid(pid, 0)[1])

    threads = [threading.Thread(target=holder), threading.Thread(target=forker)]
    threads[0].start()
    assert holding.wait(5)
    threads[1].start()
    try:
        assert not forked.wait(0.3)  # the fork waits for the lock holder ...
    finally:
        release.set()
    assert forked.wait(5)  # ... and goes ahead once it left
    for thread in threads:
        thread.join(10)
    assert statuses == [0]
    assert client.flush(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_for_a_tls_block_to_end():
    """OpenSSL's locks held at a fork stay held in the child: a fork waits until no
    thread is building a TLS context or in a handshake (``no_fork_during``)."""
    inside, leave, forked = threading.Event(), threading.Event(), threading.Event()
    statuses: list[int] = []

    def tls_work() -> None:
        with no_fork_during():
            inside.set()
            leave.wait(10)

    def forker() -> None:
        pid = os.fork()
        if pid == 0:
            with no_fork_during():  # the child's gate is open
                os._exit(0)
        forked.set()
        statuses.append(os.waitpid(pid, 0)[1])

    worker = threading.Thread(target=tls_work)
    worker.start()
    assert inside.wait(5)
    fork_thread = threading.Thread(target=forker)
    fork_thread.start()
    try:
        assert not forked.wait(0.3)
    finally:
        leave.set()
    assert forked.wait(5)
    for thread in (worker, fork_thread):
        thread.join(10)
    assert statuses == [0]


def test_a_fork_waits_for_an_import_on_another_thread_at_most_a_second():
    """A fork waits while one of our threads imports (``import_fork_safe``), but not for
    ever: that import may itself wait for a module lock the forking thread holds."""
    script = textwrap.dedent(
        """
        import os, threading
        from posthog_otel import _fork

        held, release = threading.Event(), threading.Event()

        def importing():  # stands for an import that cannot finish before the fork
            with _fork._import_guard:
                held.set()
                release.wait(30)

        threading.Thread(target=importing, daemon=True).start()
        held.wait(5)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        release.set()
        assert os.waitpid(pid, 0)[1] == 0
        print("forked")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=20, check=False
    )
    assert proc.stdout.strip() == b"forked", proc.stderr.decode()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reuses_the_tls_context_made_with_the_client(server):
    """The TLS context is made on the creating thread, once per process: a child never
    builds one (the gunicorn --preload hang: the master's flush thread built its context
    while a worker was forked, and the worker hung building its own)."""
    script = textwrap.dedent(
        f"""
        import os
        from posthog_otel import Client
        from posthog_otel.export import _transport
        client = Client({API_KEY!r}, host={server.url!r}, flush_interval=60)
        made = _transport._tls[:]  # made in Client(), on this thread
        client.capture("parent", "u")
        assert client.flush(10)
        pid = os.fork()
        if pid == 0:
            client.capture("child", "u")
            ok = client.flush(10)
            pool = client._transport._client()._transport._pool
            os._exit(0 if ok and pool._ssl_context is made[0] else 1)
        print(len(made), os.waitpid(pid, 0)[1])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.split() == [b"1", b"0"]
    assert sorted(server.event_names()) == ["child", "parent"]


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs POSIX signals")
def test_our_threads_leave_sigterm_to_the_main_thread(server, make_client):
    """A SIGTERM that lands on our flush thread does not wake the main thread where it
    waits (a multiprocessing worker waiting for its next task then never runs the
    handler, nor dies): our threads block it, so the kernel picks another thread."""
    masks: dict[str, set[int]] = {}

    def probe(exc: Exception, events: list[dict[str, object]]) -> None:
        # on_error runs on the flush thread when a batch is given up.
        masks[threading.current_thread().name] = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    client = make_client(on_error=probe)
    server.fail_next(1, 401)
    client.capture("rejected", "u")
    client.flush(5)
    assert list(masks) == ["posthog_otel-flush"]
    assert {signal.SIGTERM, signal.SIGINT} <= masks["posthog_otel-flush"]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # main's
