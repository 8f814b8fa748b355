"""The durable spool (issue #16, item 2): ``Client(spool_path=...)`` keeps accepted
analytics events in SQLite until PostHog acknowledges them; ``kill -9`` and restarts
lose nothing written, nothing is sent twice by two live processes, and a spool that
cannot be used degrades to memory with one warning."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from posthog_otel import Client
from posthog_otel.export import WRITE_WINDOW
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY
from .hostile_server import HostileServer
from .test_delivery import assert_accounted
from .test_fork_safety import _wait_child

ROOT = Path(__file__).resolve().parent.parent


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _spooled_while_down(
    path: Path, names: list[str], server: FakePostHog, key: str = API_KEY, **kwargs
) -> list[str]:
    """Capture ``names`` while ``server`` answers 503; close. Their uuids."""
    server.fail_next(1000, 503)
    client = Client(
        key, host=server.url, spool_path=path, max_retries=0, flush_interval=60, **kwargs
    )
    uuids = [
        client.capture(name, "u1", {"i": i}, timestamp=1_700_000_000.0 + i)
        for i, name in enumerate(names)
    ]
    assert client.close(1) is False
    server.clear_faults()
    stats = client.stats
    assert stats.spooled == len(names) - stats.dropped["spool_full"]
    assert stats.queued == 0 and stats.in_flight == 0 and stats.dropped["shutdown"] == 0
    assert_accounted(client)
    server.reset()
    return [u for u in uuids if u is not None]


@pytest.mark.parametrize("mode", ["v0", "v1"])
def test_server_down_at_close_counts_spooled_and_the_next_start_sends_them(tmp_path, server, mode):
    path = tmp_path / "spool.db"
    names = [f"e{i}" for i in range(30)]
    uuids = _spooled_while_down(path, names, server, capture_mode=mode)
    assert _rows(path) == 30

    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60, capture_mode=mode)
    assert client.flush(5) is True
    stats = client.stats
    assert stats.recovered == 30 and stats.sent == 30 and stats.enqueued == 30
    assert_accounted(client)
    client.capture("after", "u1")
    assert client.close(5) is True
    events = server.events
    # In order, once each, with their original uuids and timestamps.
    assert [e["event"] for e in events] == [*names, "after"]
    assert [e["uuid"] for e in events[:30]] == uuids
    assert events[3]["timestamp"].startswith("2023-11-14T22:13:23")
    assert _rows(path) == 0
    assert_accounted(client)


def test_sync_mode_leftovers_wait_out_an_outage_like_any_kept_batch(tmp_path, server):
    """In sync mode no thread serves flush requests: the one that loading leftovers makes
    must not turn every capture into a flush that skips the cool-down (during an outage,
    eight captures gave the leftovers up as ``retries_exhausted`` and deleted their rows)."""
    path = tmp_path / "spool.db"
    _spooled_while_down(path, [f"old{i}" for i in range(5)], server)
    server.fail_next(1000, 503)
    client = Client(
        API_KEY, host=server.url, spool_path=path, sync_mode=True, max_retries=0, flush_interval=60
    )
    for i in range(20):
        client.capture(f"new{i}", "u1")
    assert client.stats.recovered == 5
    assert client.stats.dropped["retries_exhausted"] == 0
    assert len(server.capture_requests()) == 1  # then the cool-down
    assert _rows(path) == 25
    server.clear_faults()
    assert client.flush(5) is True
    assert [e["event"] for e in server.events] == [
        *(f"old{i}" for i in range(5)),
        *(f"new{i}" for i in range(20)),
    ]
    assert _rows(path) == 0
    client.close(2)
    assert_accounted(client)


def test_a_batch_kept_for_retry_keeps_its_rows_and_an_acknowledged_one_loses_them(tmp_path, server):
    path = tmp_path / "spool.db"
    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60, max_retries=0)
    server.fail_next(1, 503)
    client.capture("a", "u1")
    assert client.flush(5) is False  # retained: still in the spool
    assert client.stats.retained == 1 and _rows(path) == 1
    assert client.flush(5) is True
    assert _rows(path) == 0
    server.reject_if(lambda event: event.get("event") == "bad")
    client.capture("bad", "u1")  # a terminal drop is final too: the row goes
    client.flush(5)
    assert client.stats.dropped["rejected"] == 1 and _rows(path) == 0
    client.close(2)
    assert_accounted(client)


def test_capture_v1_per_event_answers_settle_their_rows(tmp_path, server):
    """Delivered and dropped events lose their rows as the answer comes; one the server
    asks to retry keeps its row until it is delivered."""
    path = tmp_path / "spool.db"
    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60, capture_mode="v1")
    asked: list[str] = []

    def decide(event):
        if event["event"] == "dropped":
            return "drop"
        if event["event"] == "later" and not asked:
            asked.append(event["uuid"])
            return "retry"
        return None

    server.set_event_results(decide)
    for name in ("ok", "dropped", "later"):
        client.capture(name, "u1")
    assert client.flush(5) is False  # one event dropped by the server
    assert client.stats.sent == 2 and client.stats.dropped["rejected"] == 1
    assert _rows(path) == 0
    client.close(2)
    assert_accounted(client)


_CHILD = textwrap.dedent(
    """
    import random, sys, time
    from posthog_otel import Client
    client = Client("phc_test_key_0123456789", host=sys.argv[1], spool_path=sys.argv[2],
                    flush_at=20, flush_interval=0.2, timeout=30)
    rng = random.Random(int(sys.argv[3]))
    print("ready", flush=True)
    i = 0
    while True:
        uuid = client.capture(f"e{i}", "u1", {"i": i})
        print(uuid, time.monotonic(), flush=True)
        i += 1
        time.sleep(rng.random() * 0.02)
    """
)


def _read_lines(proc: subprocess.Popen[str], lines: list[str], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("ready"):
            ready.set()
        else:
            lines.append(line)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_loses_nothing_captured_before_the_window(tmp_path, seed):
    """A process captures in a loop while its flush thread hangs on a server that never
    answers (nothing is acknowledged: only the spool keeps events); it is killed at a
    random moment. A new start on the same spool delivers every event captured more
    than ``WRITE_WINDOW`` before the kill, exactly once."""
    path = tmp_path / "spool.db"
    rng = random.Random(seed)
    with HostileServer("silent") as silent:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, silent.url, str(path), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines: list[str] = []
        ready = threading.Event()
        reader = threading.Thread(target=_read_lines, args=(proc, lines, ready), daemon=True)
        reader.start()
        try:
            assert ready.wait(30)
            deadline = time.monotonic() + 0.3 + rng.random() * 0.7
            while time.monotonic() < deadline:
                time.sleep(0.01)
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
        reader.join(10)
    captured = {}
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and line.endswith("\n"):  # not a line the kill cut short
            captured[fields[0]] = float(fields[1])
    assert len(captured) > 10
    must = {uuid for uuid, at in captured.items() if at < killed_at - WRITE_WINDOW}
    assert must

    # The same host, answering again (the spool sends a row only to its own host).
    with FakePostHog(port=int(silent.url.rsplit(":", 1)[1])) as back:
        client = Client(API_KEY, host=back.url, spool_path=path, flush_interval=60)
        assert client.flush(10) is True
        client.close(5)
    delivered = [event["uuid"] for event in back.events]
    assert len(delivered) == len(set(delivered))  # exactly once
    assert must <= set(delivered), sorted(must - set(delivered))[:5]
    assert len(set(delivered) - set(captured)) <= 1  # the event of a line cut short
    assert _rows(path) == 0


def test_a_live_process_keeps_its_rows_and_a_dead_ones_are_adopted_at_the_next_start(
    tmp_path, server
):
    """Two processes on one spool never send each other's rows; the rows of one that
    was killed are sent, once, by the next process that starts."""
    path = tmp_path / "spool.db"
    script = textwrap.dedent(
        """
        import sys, time
        from posthog_otel import Client
        # flush_interval: nothing is sent (nor acknowledged) before the kill
        client = Client("phc_test_key_0123456789", host=sys.argv[1], spool_path=sys.argv[2],
                        flush_interval=60, timeout=30)
        uuids = [client.capture(f"a{i}", "u1") for i in range(20)]
        print(" ".join(uuids), flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, server.url, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        uuids = proc.stdout.readline().split()
        assert len(uuids) == 20
        _wait_until(lambda: _rows(path) == 20)  # written within the window

        live = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60)
        live.capture("b", "u1")
        assert live.flush(5) is True
        assert live.stats.recovered == 0
        assert server.event_names() == ["b"]  # the live process's rows stay its own
    finally:
        proc.kill()
        proc.wait(10)

    later = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60)
    assert later.flush(5) is True
    assert later.stats.recovered == 20
    live.capture("c", "u1")
    assert live.flush(5) is True and live.stats.recovered == 0  # not adopted twice
    later.close(2)
    live.close(2)
    delivered = [event["uuid"] for event in server.events]
    assert len(delivered) == len(set(delivered)) == 22
    assert set(uuids) <= set(delivered)
    assert _rows(path) == 0


def test_the_size_bound_drops_and_counts(tmp_path, warnings_log):
    path = tmp_path / "spool.db"
    names = [f"e{i}" for i in range(60)]
    with FakePostHog() as down:
        down.fail_next(1000, 503)
        client = Client(
            API_KEY,
            host=down.url,
            spool_path=path,
            max_retries=0,
            flush_interval=60,
            max_spool_bytes=64 * 1024,
        )
        for name in names:
            client.capture(name, "u1", {"blob": "x" * 4000})
        client.close(1)
        stats = client.stats
    assert stats.dropped["spool_full"] > 0
    assert stats.spooled > 0
    assert stats.spooled + stats.dropped["spool_full"] == 60
    assert_accounted(client)
    assert "spool_full" in warnings_log.text
    assert os.path.getsize(path) < 200 * 1024


def _spool_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "spool" in r.getMessage()]


@pytest.mark.parametrize("case", ["garbage", "parent_is_a_file", "directory", "read_only"])
def test_a_spool_that_cannot_be_used_degrades_to_memory_with_one_warning(
    tmp_path, server, warnings_log, case
):
    path = tmp_path / "spool.db"
    if case == "garbage":
        path.write_bytes(os.urandom(8192))
    elif case == "parent_is_a_file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "spool.db"
    elif case == "directory":
        path.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only directories")
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o500)
        path = tmp_path / "ro" / "spool.db"
    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60)
    for i in range(5):
        assert client.capture(f"e{i}", "u1") is not None
    assert client.flush(5) is True
    client.capture("more", "u1")
    assert client.close(5) is True
    assert server.event_names() == ["e0", "e1", "e2", "e3", "e4", "more"]
    assert len(_spool_warnings(warnings_log)) == 1, _spool_warnings(warnings_log)
    assert client.stats.spooled == 0
    assert_accounted(client)


def test_a_spool_that_fails_mid_run_degrades_to_memory_with_one_warning(
    tmp_path, server, warnings_log
):
    """The file replaced under the client (as a disk error would): one warning, and
    what is captured later is delivered from memory."""
    path = tmp_path / "spool.db"
    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60)
    client.capture("first", "u1")
    assert client.flush(5) is True
    with sqlite3.connect(path) as conn:  # what a broken disk looks like to the writer
        conn.execute("DROP TABLE events")
    for i in range(3):
        client.capture(f"later{i}", "u1")
        assert client.flush(5) is True
    assert client.close(5) is True
    assert server.event_names() == ["first", "later0", "later1", "later2"]
    assert len(_spool_warnings(warnings_log)) == 1, _spool_warnings(warnings_log)
    assert_accounted(client)


_DISK_FULL = textwrap.dedent(
    """
    import logging, os, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from posthog_otel import Client
    client = Client("phc_test_key_0123456789", host=sys.argv[1], spool_path=sys.argv[2],
                    flush_interval=60)
    client.capture("warm", "u1")
    assert client.flush(5)
    limit = max(os.path.getsize(sys.argv[2] + suffix) for suffix in ("", "-wal")) + 64 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # the disk is full from here
    for i in range(40):
        client.capture(f"e{i}", "u1", {"blob": "x" * 4000})
        if i % 10 == 9:
            assert client.flush(5)
    assert client.close(5)
    print(client.stats.sent, client.stats.spooled)
    """
)


def test_a_full_disk_degrades_to_memory_with_one_warning(tmp_path, server):
    """A real write failure: the file size limit (``RLIMIT_FSIZE``) makes SQLite's writes
    fail as on a full disk. One warning; every event is still delivered."""
    path = tmp_path / "spool.db"
    result = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, server.url, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["41", "0"]
    warnings = [line for line in result.stderr.splitlines() if "spool" in line]
    assert len(warnings) == 1 and "kept in memory" in warnings[0], result.stderr
    assert server.event_names() == ["warm", *(f"e{i}" for i in range(40))]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection_and_the_parent_keeps_working(
    tmp_path, server, warnings_log
):
    path = tmp_path / "spool.db"
    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60)
    client.capture("parent-before", "u1")
    assert client.flush(5) is True
    parent_owner = client._exporter._store.owner  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            client.capture("child", "u1")
            ok = client.flush(5) is True
            ok = ok and client._exporter._store.owner != parent_owner  # type: ignore[attr-defined]
            ok = client.close(5) is True and ok
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    client.capture("parent-after", "u1")
    assert client.flush(5) is True
    assert client.close(5) is True
    assert sorted(server.event_names()) == ["child", "parent-after", "parent-before"]
    assert _spool_warnings(warnings_log) == []
    assert _rows(path) == 0


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux)")
def test_forks_while_the_writer_writes_never_hang_a_child(tmp_path, server):
    """A thread captures without pause (the writer is in SQLite most of the time) while
    the process forks: each child opens the spool, sends and closes in time."""
    path = tmp_path / "spool.db"
    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60, flush_at=50)
    stop = threading.Event()

    def capture() -> None:
        while not stop.is_set():
            client.capture("busy", "u1", {"blob": "x" * 200})

    thread = threading.Thread(target=capture)
    thread.start()
    try:
        for round_ in range(4):
            time.sleep(0.05)  # let the writer get busy again between forks
            pid = os.fork()
            if pid == 0:
                ok = False
                try:
                    client.capture(f"child{round_}", "u1")
                    # Generous: the parent's writer holds SQLite's write lock most
                    # of the time, and CI machines are loaded.
                    ok = client.flush(15) is True and client.close(15) is True
                finally:
                    os._exit(0 if ok else 1)
            assert _wait_child(pid, 40) == 0
    finally:
        stop.set()
        thread.join(10)
    assert client.close(10) is True
    names = server.event_names()
    assert [n for n in names if n.startswith("child")] == [f"child{i}" for i in range(4)]
    assert _rows(path) == 0


def test_spool_path_from_the_environment(tmp_path, server, monkeypatch):
    path = tmp_path / "env.db"
    monkeypatch.setenv("POSTHOG_SPOOL_PATH", str(path))
    client = Client(API_KEY, host=server.url, flush_interval=60)
    assert client.config.spool_path == str(path)
    client.capture("a", "u1")
    assert client.close(5) is True
    assert path.exists() and server.event_names() == ["a"]
    with pytest.raises(ValueError, match="spool_path"):
        Client(API_KEY, host=server.url, spool_path="")
    with pytest.raises(ValueError, match="max_spool_bytes"):
        Client(API_KEY, host=server.url, spool_path=path, max_spool_bytes=10)


def test_the_logs_and_ai_lanes_stay_in_memory(tmp_path, server):
    path = tmp_path / "spool.db"
    client = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60)
    client.capture_log("a log line", "info")
    client.capture_ai("$ai_generation", "u1", {"$ai_model": "m"})
    assert client.flush(5) is True
    assert _rows(path) == 0
    client.close(5)
    assert client.stats.logs.sent == 1 and client.stats.ai.sent == 1


def test_an_owner_on_another_host_is_adopted_only_once_its_lease_ran_out(tmp_path):
    """A file shared across hosts: another host's pid cannot be checked, so its rows are
    adopted only when it has been silent for longer than the lease."""
    from posthog_otel.export._spool import SpoolStore

    path = str(tmp_path / "spool.db")
    other = SpoolStore(path, lane="v0", max_bytes=1 << 20)
    other.claim()
    other.append([b'{"event":"a","uuid":"1"}', b'{"event":"b","uuid":"2"}'])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE owners SET host = 'elsewhere', pid = 1")
    me = SpoolStore(path, lane="v0", max_bytes=1 << 20)
    assert me.claim() == 0  # alive as far as anyone here can tell: no rows of ours
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE owners SET seen = seen - 3600 WHERE host = 'elsewhere'")
    later = SpoolStore(path, lane="v0", max_bytes=1 << 20)
    rows = later.leftovers(0, later.claim(), 100)
    assert [payload for _, payload in rows] == [
        b'{"event":"a","uuid":"1"}',
        b'{"event":"b","uuid":"2"}',
    ]
    later.ack([rowid for rowid, _ in rows])
    for store in (other, me, later):
        store.close()
    assert _rows(Path(path)) == 0


def test_events_are_sent_only_by_a_process_with_their_key_host_and_mode(tmp_path, server):
    """One spool file shared by clients of two projects, two hosts or two capture modes:
    an event is never sent with another project's key, to another host, or encoded for
    another endpoint; it waits for a process like the one that accepted it."""
    path = tmp_path / "spool.db"
    uuids = _spooled_while_down(path, ["a0", "a1"], server)
    other_key = "phc_project_b_0123456789"
    with FakePostHog() as elsewhere:
        strangers = [
            Client(other_key, host=server.url, spool_path=path, flush_interval=60),
            Client(API_KEY, host=elsewhere.url, spool_path=path, flush_interval=60),
            Client(API_KEY, host=server.url, spool_path=path, flush_interval=60, capture_mode="v1"),
        ]
        for client in strangers:
            assert client.flush(5) is True
            assert client.stats.recovered == 0
            assert client.close(5) is True
        assert elsewhere.events == []
    assert server.events == [] and _rows(path) == 2
    owner = Client(API_KEY, host=server.url, spool_path=path, flush_interval=60)
    assert owner.close(5) is True and owner.stats.recovered == 2
    assert [e["uuid"] for e in server.events] == uuids
    assert {r.json["api_key"] for r in server.capture_requests()} == {API_KEY}
    assert _rows(path) == 0


def test_leftovers_beyond_the_queue_stay_on_disk_and_never_crowd_new_events_out(tmp_path, server):
    """After an outage that outlived processes, a start may adopt more rows than its
    queue holds. They are loaded a part at a time (at most half the queue), so what is
    captured meanwhile is accepted, not dropped ``queue_full``; all of them are sent,
    once each, as the queue drains."""
    path = tmp_path / "spool.db"
    old = [f"old{i}" for i in range(250)]
    server.fail_next(1000, 503)
    dead = [  # two processes' worth, both alive until all is spooled
        Client(API_KEY, host=server.url, spool_path=path, flush_interval=60, max_retries=0)
        for _ in range(2)
    ]
    for i, name in enumerate(old):
        dead[i % 2].capture(name, "u1")
    for client in dead:
        client.close(1)
    assert sum(client.stats.spooled for client in dead) == 250 == _rows(path)
    client = Client(
        API_KEY,
        host=server.url,
        spool_path=path,
        flush_interval=60,
        max_retries=0,
        max_queue_size=200,
    )
    assert client.flush(5) is False  # the server is still down
    for i in range(50):
        client.capture(f"new{i}", "u1")
    assert client.flush(5) is False
    stats = client.stats
    assert stats.dropped["queue_full"] == 0
    assert stats.queued <= 200 and stats.recovered <= 100
    assert_accounted(client)
    server.clear_faults()
    assert client.flush(10) is True
    for _ in range(10):  # the rest comes as the queue drains
        if client.stats.recovered == 250:
            break
        client.flush(10)
    assert client.close(10) is True
    names = server.event_names()
    assert sorted(names) == sorted(old + [f"new{i}" for i in range(50)])
    assert client.stats.recovered == 250 and _rows(path) == 0
    assert_accounted(client)


def test_a_spool_locked_by_another_process_is_used_once_the_lock_is_free(
    tmp_path, server, warnings_log, monkeypatch
):
    """Another process holding SQLite's write lock past the busy timeout (a busy fleet
    on one file) is a passing state, not a broken spool: the events of the moment go
    in memory (warned), and the spool is used again once the lock is free. It used to
    be given up for the process's whole life."""
    from posthog_otel.export import _spool

    monkeypatch.setattr(_spool, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "spool.db"
    Client(API_KEY, host=server.url, spool_path=path).close(5)  # the file exists
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for a long time
    server.fail_next(1000, 503)
    client = Client(API_KEY, host=server.url, spool_path=path, max_retries=0, flush_interval=60)
    try:
        client.capture("while_locked", "u1")
        _wait_until(lambda: _spool_warnings(warnings_log))
        holder.execute("ROLLBACK")
        uuids = [client.capture(f"after{i}", "u1") for i in range(3)]
        _wait_until(lambda: _rows(path) == 3)
    finally:
        holder.close()
        client.close(1)
    assert client.stats.spooled == 3
    assert_accounted(client)
    server.clear_faults()
    server.reset()
    Client(API_KEY, host=server.url, spool_path=path).close(5)
    assert sorted(e["uuid"] for e in server.events) == sorted(uuids)
