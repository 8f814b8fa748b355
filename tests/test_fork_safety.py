"""Fork safety (issue #9 item 4): every long-lived lock comes from ``_fork``'s registry,
and a process forked while other threads capture and read flags can read a flag and
capture at once."""

from __future__ import annotations

import ast
import os
import select
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import posthog_otel
from posthog_otel._fork import reset_in_child
from posthog_otel.flags import _service
from posthog_otel.testing import FakePostHog

PACKAGE = Path(posthog_otel.__file__).parent
SYNC_TYPES = {"Lock", "RLock", "Condition", "Event", "Semaphore", "BoundedSemaphore", "Barrier"}
# Where a lock may be made directly: the registry itself, the test helpers, and
# short-lived per-call objects that no other thread can hold at a fork.
ALLOWED_FILES = {"_fork.py"}
ALLOWED_DIRS = {"testing"}
ALLOWED_FUNCTIONS = {("flags/_remote.py", "RemoteFlags._sleep")}


def _direct_lock_creations(source: str, relative: str) -> list[str]:
    """``threading.Lock()`` and the like (calls, or factories passed on) in a file."""
    tree = ast.parse(source, relative)
    from_threading = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("threading", "_thread")
        for alias in node.names
        if alias.name in SYNC_TYPES or alias.name == "allocate_lock"
    }

    def is_sync_type(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return node.value.id in ("threading", "_thread") and (
                node.attr in SYNC_TYPES or node.attr == "allocate_lock"
            )
        return isinstance(node, ast.Name) and node.id in from_threading

    found: list[str] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = [*scope, child.name]
            made = (isinstance(child, ast.Call) and is_sync_type(child.func)) or (
                isinstance(child, ast.keyword) and is_sync_type(child.value)
            )
            where = ".".join(scope)
            if made and (relative, where) not in ALLOWED_FUNCTIONS:
                found.append(f"{relative}:{getattr(child, 'lineno', '?')} in {where}")
            visit(child, inner)

    visit(tree, [])
    return found


def test_every_long_lived_lock_comes_from_the_fork_registry():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.as_posix() in ALLOWED_FILES or relative.parts[0] in ALLOWED_DIRS:
            continue
        offenders += _direct_lock_creations(path.read_text(), relative.as_posix())
    assert not offenders, "use posthog_otel._fork.fork_safe_*: " + ", ".join(offenders)


def test_the_scan_sees_what_it_must():
    """The scan itself: calls, aliases and factories passed as arguments are found."""
    sample = (
        "import threading\nfrom threading import Event as E\n"
        "a = threading.Lock()\nb = E()\nc = field(default_factory=threading.RLock)\n"
        "x: threading.Lock\n"
    )
    assert len(_direct_lock_creations(sample, "sample.py")) == 3


def test_registered_locks_come_back_released_in_a_child():
    from posthog_otel._fork import fork_safe_condition, fork_safe_event, fork_safe_lock

    lock, event = fork_safe_lock(), fork_safe_event()
    cond = fork_safe_condition(fork_safe_lock())
    event.set()
    taken = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock, cond:
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: both locks were held by a thread that is gone
            ok = lock.acquire(timeout=2) and cond.acquire(timeout=2) and event.is_set()
            os._exit(0 if ok else 1)
        assert _wait_child(pid, 10) == 0
    finally:
        release.set()
        holder.join(10)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux)")
def test_a_child_reads_flags_although_a_thread_held_the_flag_locks_at_the_fork(make_client):
    """The moment of the reported deadlock, made certain: another thread is inside the
    exposure tracker and the result cache (holding their locks) when the process forks."""
    with FakePostHog(flag_definitions=DEFINITIONS, flags=REMOTE) as server:
        client = make_client(host=server.url, secret_key=SECRET, flag_result_cache_ttl=60)
        assert client.get_feature_flag("remote-flag", "warm-up") is True
        service = client.flags
        inside, release = threading.Event(), threading.Event()

        def inside_the_flag_code() -> None:
            with service._seen_lock, service.cache._lock:
                inside.set()
                release.wait(30)

        holder = threading.Thread(target=inside_the_flag_code)
        holder.start()
        assert inside.wait(10)
        try:
            pid = os.fork()
            if pid == 0:
                _child(client)
            assert _wait_child(pid, CHILD_DEADLINE) == 0
        finally:
            release.set()
            holder.join(10)


# ---------------------------------------------------------------- fork stress

SECRET = "phs_secret"
FORKS = 200
# A static cohort: only the server can decide, so every read of it goes to /flags.
REMOTE_ONLY_FLAG = {
    "id": 2,
    "key": "remote-flag",
    "active": True,
    "filters": {
        "groups": [
            {
                "properties": [{"key": "id", "type": "cohort", "value": 99}],
                "rollout_percentage": 100,
            }
        ]
    },
}
CHILD_DEADLINE = 10.0
DEFINITIONS = {
    "flags": [
        {
            "id": 1,
            "key": "local-flag",
            "active": True,
            "filters": {"groups": [{"rollout_percentage": 50}]},
        },
        REMOTE_ONLY_FLAG,
    ],
    "group_type_mapping": {},
    "cohorts": {},
}
REMOTE = {"flags": {"remote-flag": {"key": "remote-flag", "enabled": True}}}


def _wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or ``None`` (after killing it) when it overran."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _child(client, remote_too: bool = True) -> None:
    """In the forked child: read a flag (and one PostHog decides) and capture, then leave
    without cleanup."""
    status = 1
    try:
        me = f"child-{os.getpid()}"
        local = client.get_feature_flag("local-flag", me)
        remote = client.get_feature_flag("remote-flag", me) if remote_too else True
        client.capture("forked", distinct_id=me)
        status = 0 if isinstance(local, bool) and remote is True else 2
    finally:
        os._exit(status)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux)")
def test_fork_while_threads_capture_and_read_flags(make_client, monkeypatch):
    # A long-running service has a full exposure tracker: every new person evicts one.
    monkeypatch.setattr(_service, "_TRACKER_MAX_IDS", 100)
    with FakePostHog(flag_definitions=DEFINITIONS, flags=REMOTE) as server:
        client = make_client(
            host=server.url, secret_key=SECRET, flush_interval=0.05, flag_result_cache_ttl=60
        )
        assert client.get_feature_flag("remote-flag", "warm-up") is True
        assert client.flush(10)  # the first request (and its imports) is behind us
        stop = threading.Event()
        reads = [0]

        def busy(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                did = f"t{worker}-{n}"  # a new person on every read: new exposures
                client.get_feature_flag("local-flag", did)
                if n % 8 == 0:
                    client.get_feature_flag("remote-flag", did)
                client.capture("busy", distinct_id=did)
                reads[0] += 1

        threads = [threading.Thread(target=busy, args=(i,), daemon=True) for i in range(3)]
        # Switch threads very often, so that forks land inside short critical sections
        # (CPython 3.11 only switches at a few points: rare at the default 5 ms).
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        for thread in threads:
            thread.start()
        failures: list[tuple[int, int | None]] = []
        started = time.monotonic()
        try:
            for i in range(FORKS):
                pid = os.fork()
                if pid == 0:
                    _child(client, remote_too=i % 5 == 0)  # a request costs the most
                status = _wait_child(pid, CHILD_DEADLINE)
                if status != 0:
                    failures.append((i, status))
                    break  # a hang costs the deadline: one is enough to fail
        finally:
            stop.set()
            sys.setswitchinterval(switch_interval)
            for thread in threads:
                thread.join(10)
        assert not failures, f"children that hung (None) or failed: {failures}"
        assert reads[0] > FORKS  # the other threads really ran during the forks
        assert time.monotonic() - started < 60


def test_reset_registrations_from_many_threads_are_all_kept():
    """Objects made on several threads at once (clients, their exporters and flag
    workers) are all reset in a child: no registration may be lost to a race."""

    class Resettable:
        reset_ran = False

        def reset(self) -> None:
            self.reset_ran = True

    made: list[Resettable] = []
    start = threading.Barrier(4)

    def register(count: int) -> None:
        start.wait()
        for _ in range(count):
            item = Resettable()
            made.append(item)
            reset_in_child(item.reset)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the race shows at once
    try:
        threads = [threading.Thread(target=register, args=(500,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports how many were reset, and leaves at once
        os.write(write, str(sum(item.reset_ran for item in made)).encode())
        os._exit(0)
    os.close(write)
    try:
        assert _wait_child(pid, 20) == 0
        assert int(os.read(read, 64)) == len(made) == 2000
    finally:
        os.close(read)
