"""The durable spool's store: one SQLite database (WAL) shared by every process that
names the same ``spool_path``.

Rows are encoded events (the lane's payload bytes, sent as they are) owned by one
process at a time. Each process registers as an *owner* (host, pid, a heartbeat); at
open, under SQLite's write lock (``BEGIN IMMEDIATE``, so two processes starting at once
never both take the same rows), it adopts the rows of owners that are gone: closed
cleanly (their owner row removed), dead on this host (their pid no longer runs, or is
now ours), or silent for longer than ``lease`` seconds (another host, or a hung
process). Gunicorn workers on one path are therefore safe: each sends only its own
rows, and a killed worker's rows are sent by the next process that starts.

Durability: ``synchronous=NORMAL`` in WAL mode survives a process crash (``kill -9``);
a power cut may lose the last transactions. Every method may raise ``sqlite3.Error`` or
``OSError``: the exporter (``_spooling``) turns that into memory-only delivery.

``sqlite3``, ``socket`` and ``uuid`` are imported when a spool is opened, not with the
package (a client without a spool never pays for them); the client imports them on its
creating thread (``SPOOL_IMPORTS``), as every module the writer thread needs.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

__all__ = ["DEFAULT_SPOOL_BYTES", "SPOOL_IMPORTS", "SpoolStore", "is_busy", "spool_lane"]

SPOOL_IMPORTS = ("sqlite3", "socket", "uuid")

DEFAULT_SPOOL_BYTES = 64 * 1024 * 1024
# An owner silent for longer than this is taken for dead (its rows are adopted).
LEASE_SECONDS = 60.0
# How long a statement waits for another process's write lock before it fails as
# "database is locked" (a passing state: the exporter tries again later).
BUSY_TIMEOUT = 5.0
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL,"
    " lane TEXT NOT NULL, payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_owner ON events (owner, id)",
    "CREATE TABLE IF NOT EXISTS owners ("
    " owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, seen REAL NOT NULL)",
)
# What a row costs on disk beyond its payload (rowid, owner, lane, index entry): an
# estimate that keeps the size bound honest for small events.
ROW_OVERHEAD = 96


def spool_lane(capture_mode: str, host: str, api_key: str, *, historical: bool) -> str:
    """The ``lane`` a client's rows are written and adopted under: its capture mode (the
    payload's encoding) and a digest of its project key and host. A file shared by
    clients of several projects or hosts never has one send another's events, with
    the wrong key or to the wrong place; the key itself is not written to the file."""
    import hashlib

    digest = hashlib.sha256(f"{api_key}\n{host}\n{historical}".encode()).hexdigest()
    return f"{capture_mode}:{digest[:32]}"


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked"/"busy": another process held
    the write lock for longer than ``BUSY_TIMEOUT``, a state that passes."""
    message = str(exc).lower()
    return type(exc).__name__ == "OperationalError" and ("locked" in message or "busy" in message)


class SpoolStore:
    """An open spool for one owner (this process) and one lane (``spool_lane``: the
    encoding, the project and the host its rows are sent with)."""

    def __init__(self, path: str, *, lane: str, max_bytes: int, lease: float = LEASE_SECONDS):
        import socket
        import sqlite3
        import uuid

        self.path = path
        self._lane = lane
        self._max_bytes = max_bytes
        self._lease = lease
        self._host = socket.gethostname()
        self.owner = f"{self._host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise
        _ours.add(self.owner)

    def _setup(self) -> None:
        import sqlite3

        conn = self._conn
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("the spool cannot use WAL mode here")
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            conn.execute(statement)
        self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])

    def claim(self) -> int:
        """Register this owner, adopt the rows of owners that are gone, and return the
        highest rowid of ours for this lane (0: none): ``leftovers`` reads them, a part
        at a time (rows written from now on have higher rowids)."""
        conn, now = self._conn, time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?)",
                (self.owner, self._host, os.getpid(), now),
            )
            dead = [
                owner
                for owner, host, pid, seen in conn.execute("SELECT * FROM owners")
                if owner != self.owner and self._gone(owner, host, pid, seen, now)
            ]
            conn.executemany("DELETE FROM owners WHERE owner = ?", [(o,) for o in dead])
            # Rows of our lane whose owner is no longer registered (dead, or closed with
            # rows left); another lane's wait for a process of theirs.
            conn.execute(
                "UPDATE events SET owner = ? WHERE lane = ?"
                " AND owner NOT IN (SELECT owner FROM owners)",
                (self.owner, self._lane),
            )
            (upto,) = conn.execute(
                "SELECT coalesce(max(id), 0) FROM events WHERE owner = ? AND lane = ?",
                (self.owner, self._lane),
            ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return int(upto)

    def leftovers(self, after: int, upto: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` rows of ours for this lane with ``after < rowid <= upto``
        (``(rowid, payload)``, oldest first)."""
        rows = self._conn.execute(
            "SELECT id, payload FROM events WHERE owner = ? AND id > ? AND id <= ?"
            " AND lane = ? ORDER BY id LIMIT ?",
            (self.owner, after, upto, self._lane, limit),
        ).fetchall()
        return [(int(rowid), bytes(payload)) for rowid, payload in rows]

    def _gone(self, owner: str, host: str, pid: int, seen: float, now: float) -> bool:
        if now - seen > self._lease:
            return True
        if host != self._host:
            return False
        if pid == os.getpid():  # another client of ours, or an earlier process that had
            return owner not in _ours  # our pid (containers: pid 1 at every start)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # EPERM: it runs, as another user
            return False
        return False

    def room(self) -> int:
        """Bytes that may still be written before the spool reaches ``max_bytes``."""
        pages, free = (
            int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "freelist_count")
        )
        return self._max_bytes - (pages - free) * self._page_size

    def append(self, payloads: list[bytes]) -> list[int]:
        """Write ``payloads`` in one transaction; their rowids, in order."""
        conn = self._conn
        rowids: list[int] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            insert = conn.execute
            owner, lane = self.owner, self._lane
            sql = "INSERT INTO events (owner, lane, payload) VALUES (?, ?, ?)"
            for payload in payloads:
                rowids.append(int(insert(sql, (owner, lane, payload)).lastrowid or 0))
            conn.execute("UPDATE owners SET seen = ? WHERE owner = ?", (time.time(), owner))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return rowids

    def ack(self, rowids: list[int]) -> None:
        """Delete rows whose events are settled for good (delivered or dropped)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(rowids), 500):
                chunk = rowids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                conn.execute(f"DELETE FROM events WHERE id IN ({marks})", chunk)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def heartbeat(self) -> None:
        """Tell other processes this owner is alive (and re-register it if a process
        that took us for dead removed it: our rows may be theirs now, never both)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?)",
            (self.owner, self._host, os.getpid(), time.time()),
        )

    def close(self) -> None:
        """Unregister (what is left is adopted by the next process that opens the spool)
        and close the connection."""
        _ours.discard(self.owner)
        try:
            self._conn.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
        finally:
            self._conn.close()

    def discard(self) -> None:
        """Close after a failure, quietly (the rows left are adopted by a later start)."""
        _ours.discard(self.owner)
        try:
            self._conn.close()
        except Exception:
            pass

    def abandon(self) -> None:
        """In a forked child: never use nor close the parent's connection (closing it may
        checkpoint or drop locks the parent relies on); keep it alive for ever."""
        _inherited.append(self._conn)
        _ours.discard(self.owner)


_inherited: list[sqlite3.Connection] = []
# The owners open in this process (another client's spool on the same path is alive).
_ours: set[str] = set()
