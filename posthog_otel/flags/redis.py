"""``RedisFlagDefinitionCache``: one process per project polls ``/flags/definitions``, the
others read the copy it keeps in Redis (issue #16), so a fleet of 800 processes makes
one process's requests instead of 800 times as many.

Leadership is a lease: ``{prefix}:{namespace}:lock`` holds ``"<token>:<owner>"`` with a
TTL (``lock_ttl``). A process that finds it free takes it with a new *fencing token*
(``INCR {prefix}:{namespace}:fence``, started from the clock in ms) and renews it from
a small thread every third of the TTL; a leader killed with ``kill -9`` stops
renewing, its lease lapses after ``lock_ttl`` and the next poll of any other process
takes over. The shared copy
(``{prefix}:{namespace}:defs``, a hash of ``payload``, ``etag``, ``fence``, ``seq``,
``version``) is written by a script that refuses a write whose ``(fence, seq)`` is not
newer than the stored one: a paused leader that wakes up after losing its lease never
overwrites its successor's definitions with older ones.

When Redis fails, the process keeps evaluating from its last good definitions and warns
once; if Redis stays down for ``fallback_after`` seconds (plus up to half that again, at
random, so that a fleet does not stampede PostHog together) it fetches from PostHog
itself until Redis answers again. A process with nothing loaded at all fetches at once.
A shared copy that cannot be read (not JSON, another version's format, larger than
``MAX_SHARED_BYTES``) is never installed: the last good set stays, with one warning
for that copy. Only Redis 6.2 commands are used (``SET``/``GET``/``INCR``/``PEXPIRE``/
``PTTL``/``HGET``/``HMGET``/``HSET``/``HSTRLEN``/``DEL``/``EVAL``), so Valkey works too.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._config import env_first
from .._fork import fork_safe_event, fork_safe_lock, import_fork_safe, reset_in_child
from .._log import logger, mark_internal_thread
from ..export import MAX_RESPONSE_BYTES

if TYPE_CHECKING:
    import redis as redis_py

__all__ = ["RedisFlagDefinitionCache"]

# A fence as a number, or -1 for one that is missing or not a whole number a token can
# pass exactly (at most 15 digits: Lua's numbers are doubles).
_FENCE_OF = """
local function fence_of(text)
  if text and #text <= 15 and string.match(text, '^%d+$') then
    return tonumber(text)
  end
  return -1
end
"""

# Take the lease when free (a new fencing token: 1 in the second place) or renew it when
# ours (0); {0, 0} when another process holds it. A lock that could never lapse (not in
# our format, or without a TTL: written by another tool or version) counts as free, or
# the fleet would have no leader for ever. The counter starts from the caller's clock in
# ms when missing (or not a fence), so that tokens keep growing across a Redis restart;
# a new token is always above the shared copy's fence (the counter evicted, the clock
# gone back), or its leader could never share.
_ACQUIRE = (
    _FENCE_OF
    + """
local current = redis.call('GET', KEYS[1])
if current then
  local token, owner = string.match(current, '^(%d+):(.*)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {tonumber(token), 0}
  end
  if owner and redis.call('PTTL', KEYS[1]) >= 0 then
    return {0, 0}
  end
end
if fence_of(redis.call('GET', KEYS[2])) < 0 then
  redis.call('SET', KEYS[2], ARGV[3])
end
local token = redis.call('INCR', KEYS[2])
local shared = redis.call('HGET', KEYS[3], 'fence')
if token <= fence_of(shared) then
  redis.call('SET', KEYS[2], shared)
  token = redis.call('INCR', KEYS[2])
end
redis.call('SET', KEYS[1], string.format('%d', token) .. ':' .. ARGV[1], 'PX', ARGV[2])
return {token, 1}
"""
)

# Store the payload only if (fence, seq) is newer than the stored one: the version then
# shared, or nil (refused). The same ETag as stored moves the fence only: readers see no
# new version to download. A stored fence that is not one counts as none.
_STORE = (
    _FENCE_OF
    + """
local stored = redis.call('HMGET', KEYS[1], 'fence', 'seq', 'etag')
local fence, seq = fence_of(stored[1]), fence_of(stored[2])
local new_fence, new_seq = tonumber(ARGV[1]), tonumber(ARGV[2])
if fence > new_fence or (fence == new_fence and seq >= new_seq) then
  return false
end
if ARGV[3] ~= '' and stored[3] == ARGV[3] then
  redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'seq', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'seq', ARGV[2], 'etag', ARGV[3],
    'payload', ARGV[4], 'version', ARGV[1] .. ':' .. ARGV[2])
end
return redis.call('HGET', KEYS[1], 'version')
"""
)

# Give the lease up if it is still ours (on shutdown: the next poll elsewhere takes over).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_SHARED_POLL = 0.05  # seconds between looks for a first shared copy
# The largest shared copy read: what PostHog may send (the transport's cap), re-encoded
# with ASCII escapes, with room to spare. A larger one is not downloaded.
MAX_SHARED_BYTES = 4 * MAX_RESPONSE_BYTES


class RedisFlagDefinitionCache:
    """Flag definitions shared by every process of a project through Redis.

    ``url``: the Redis URL (``redis://host:6379/0``), else ``POSTHOG_REDIS_URL``.
    ``namespace``: separates projects sharing one Redis; default a hash of the project
    key in ``POSTHOG_API_KEY``/``POSTHOG_PROJECT_API_KEY`` (``"default"`` without one).
    ``lock_ttl``: seconds a leader's lease lasts without renewal (a dead leader is
    replaced by the first poll elsewhere after it). ``fallback_after``: seconds Redis
    may be down before this process fetches from PostHog itself (jittered up by 50%).
    ``wait_for_shared``: how long a process with nothing loaded waits for the leader's
    first copy before fetching itself. Give each ``Client`` its own instance.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        key_prefix: str = "posthog_otel:flags",
        lock_ttl: float = 10.0,
        fallback_after: float = 60.0,
        wait_for_shared: float = 2.0,
        socket_timeout: float = 2.0,
    ) -> None:
        url = url or env_first("POSTHOG_REDIS_URL")
        if not url:
            raise ValueError("RedisFlagDefinitionCache needs a url (or POSTHOG_REDIS_URL)")
        if lock_ttl <= 0 or fallback_after < 0 or wait_for_shared < 0:
            raise ValueError("lock_ttl must be positive, fallback_after/wait_for_shared >= 0")
        try:
            redis: Any = import_fork_safe("redis")  # on the caller's thread, not the poller's
        except ImportError as exc:
            raise ImportError("RedisFlagDefinitionCache needs posthog-otel[redis]") from exc
        retry = redis.retry.Retry(redis.backoff.NoBackoff(), 1)  # one reconnect, no waits
        self._redis: redis_py.Redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, retry=retry
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        if namespace is None:
            key = env_first("POSTHOG_API_KEY", "POSTHOG_PROJECT_API_KEY")
            namespace = hashlib.sha256(key.encode()).hexdigest()[:16] if key else "default"
        base = f"{key_prefix}:{namespace}"
        self.lock_key, self.fence_key = f"{base}:lock", f"{base}:fence"
        self.defs_key = f"{base}:defs"
        self.lock_ttl = float(lock_ttl)
        self.fallback_after = float(fallback_after)
        self.wait_for_shared = float(wait_for_shared)
        self._lock = fork_safe_lock()
        self._stop = fork_safe_event()
        self._new_process()
        self._local: Mapping[str, Any] | None = None  # last good definitions we know
        self._local_version: object = None  # the shared version they came from
        self._bad_version: object = None  # the last shared version that was unreadable
        self._stored_version: object = None  # the version our last store left shared
        reset_in_child(self._new_process)

    def _new_process(self) -> None:
        """A new identity: a forked child is not its parent's leader."""
        self._owner = uuid.uuid4().hex
        self.token: int | None = None  # our fencing token while we lead
        self._lease_until = 0.0
        self._seq = 0
        self._heartbeat: threading.Thread | None = None
        self._last_call: float | None = None
        self._call_gap: float | None = None
        self._down_since: float | None = None
        self._fallback_at = 0.0

    @property
    def is_leader(self) -> bool:
        return self.token is not None

    # ---------------------------------------------------------------- protocol

    def should_fetch_flag_definitions(self) -> bool:
        """Whether this process fetches from PostHog: it leads, or Redis is down too long."""
        now = time.monotonic()
        if self._last_call is not None:  # the poller's longest pause (not a quick reload)
            self._call_gap = max(self._call_gap or 0.0, now - self._last_call)
        self._last_call = now
        try:
            token, fresh = self._acquire()
        except self._errors as exc:
            return self._redis_failed(exc)
        self._redis_back()
        if not token:
            self._lose_lead()
            return False
        with self._lock:
            became = fresh or self.token != token
            self.token, self._lease_until = token, now + self.lock_ttl
        if became:
            logger.info("flag definitions: this process leads (fencing token %d)", token)
            self._seed_if_missing()
            self._start_heartbeat()
        return True

    def get_flag_definitions(self) -> Mapping[str, Any] | None:
        """The shared copy (the same object while its version is unchanged); the last
        good one when Redis fails; ``None`` only when there is nothing at all."""
        if self._down_since is not None:
            return self._local
        try:
            version = self._redis.hget(self.defs_key, "version")
            deadline = time.monotonic() + self.wait_for_shared
            while version is None and self._local is None and time.monotonic() < deadline:
                if self._stop.wait(_SHARED_POLL):
                    break
                version = self._redis.hget(self.defs_key, "version")
            if version is None or version in (self._local_version, self._bad_version):
                return self._local
            size = self._redis.hstrlen(self.defs_key, "payload")
            if size > MAX_SHARED_BYTES:
                return self._unreadable(version, f"{size} bytes, over {MAX_SHARED_BYTES}")
            payload, version = self._redis.hmget(self.defs_key, ["payload", "version"])
        except self._errors as exc:
            self._redis_failed(exc)
            return self._local
        try:
            data = json.loads(payload or b"")
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            return self._unreadable(version, "not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("flags"), list):
            return self._unreadable(version, 'not an object with a "flags" list')
        self._local, self._local_version = data, version
        return self._local

    def _unreadable(self, version: object, why: str) -> Mapping[str, Any] | None:
        """A shared copy we cannot use: warned once, never downloaded again."""
        if version is not None and version != self._bad_version:
            self._bad_version = version
            logger.warning(
                "flag definitions in Redis (%s) cannot be read: %s; keeping the last good set",
                self.defs_key,
                why,
            )
        return self._local

    def on_flag_definitions_received(
        self, data: Mapping[str, Any], etag: str | None = None
    ) -> None:
        """Definitions fetched from PostHog: shared if we lead and nothing newer is."""
        self._local = data
        with self._lock:
            token = self.token
            if token is None:
                return  # fetched on our own (Redis down): kept for this process only
            self._seq += 1
            seq = self._seq
        if self.store(data, etag, token=token, seq=seq):
            self._local_version = self._stored_version  # ours: not downloaded back

    def shutdown(self) -> None:
        """Stop renewing and hand the lease back, so another process takes over at once."""
        self._stop.set()
        with self._lock:
            token, self.token = self.token, None
        if token is not None:
            try:
                self._redis.eval(_RELEASE, 1, self.lock_key, f"{token}:{self._owner}")
            except self._errors:
                pass  # it lapses on its own
        try:
            self._redis.close()
        except self._errors:
            pass

    # ---------------------------------------------------------------- sharing

    def store(self, data: Mapping[str, Any], etag: str | None, *, token: int, seq: int) -> bool:
        """Write ``data`` under fencing token ``token`` (and ``seq`` within it); ``False``
        when a newer copy is already shared (it is kept) or Redis failed."""
        payload = json.dumps(data, separators=(",", ":"))
        try:
            stored = self._redis.eval(
                _STORE, 1, self.defs_key, str(token), str(seq), etag or "", payload
            )
        except self._errors as exc:
            self._redis_failed(exc)
            return False
        if stored is None:
            logger.info("flag definitions: a newer copy is already shared; not overwritten")
            return False
        self._stored_version = stored
        return True

    def _seed_if_missing(self) -> None:
        """A new leader whose Redis lost the copy (a restart) shares what it has: its own
        next poll may get a 304 and would otherwise write nothing."""
        local = self._local
        if local is None or self.token is None:
            return
        try:
            if self._redis.hget(self.defs_key, "version") is not None:
                return
        except self._errors as exc:
            self._redis_failed(exc)
            return
        with self._lock:
            self._seq += 1
            seq = self._seq
        self.store(local, None, token=self.token, seq=seq)

    def _acquire(self) -> tuple[int, bool]:
        """(our fencing token or 0, whether it is new): the lease taken or renewed."""
        ttl_ms = str(max(int(self.lock_ttl * 1000), 1))
        now_ms = str(int(time.time() * 1000))
        keys = (self.lock_key, self.fence_key, self.defs_key)
        token, fresh = self._redis.eval(_ACQUIRE, 3, *keys, self._owner, ttl_ms, now_ms)
        return int(token), bool(fresh)

    # ---------------------------------------------------------------- the lease

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is not None and self._heartbeat.is_alive():
                return
            self._heartbeat = threading.Thread(
                target=self._renew_loop, name="posthog_otel-redis-lease", daemon=True
            )
            self._heartbeat.start()

    def _renew_loop(self) -> None:
        """Renew the lease every third of its TTL while our poller still polls (a poller
        that stopped must not hold the fleet's lease)."""
        mark_internal_thread()
        while not self._stop.wait(self.lock_ttl / 3):
            token = self.token
            last, gap = self._last_call, self._call_gap
            idle = time.monotonic() - (last or 0.0)
            if token is None or (gap is not None and idle > max(3 * gap, self.lock_ttl)):
                return
            try:
                got, _ = self._acquire()
            except self._errors:
                continue  # the lease lapses on its own if Redis stays away
            if got != token:
                self._lose_lead()
                return
            self._lease_until = time.monotonic() + self.lock_ttl

    def _lose_lead(self) -> None:
        with self._lock:
            if self.token is None:
                return
            self.token = None
        logger.info("flag definitions: this process no longer leads")

    # ---------------------------------------------------------------- Redis down

    def _redis_failed(self, exc: BaseException) -> bool:
        """Note the failure (warning once per outage); whether to fetch from PostHog:
        while our lease may still hold, past the fallback time, or with nothing loaded."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            delay = self.fallback_after * (1 + 0.5 * random.random())
            self._fallback_at = now + delay
            logger.warning(
                "Redis for flag definitions unreachable (%s): %s",
                type(exc).__name__,
                "fetching them from PostHog directly until it is back"
                if self._local is None
                else f"keeping the last good set; fetching from PostHog directly after "
                f"{delay:.0f} s if it stays down",
            )
        if self.token is not None and now < self._lease_until:
            return True
        self._lose_lead()
        return self._local is None or now >= self._fallback_at

    def _redis_back(self) -> None:
        if self._down_since is not None:
            self._down_since = None
            logger.info("Redis for flag definitions reachable again")
