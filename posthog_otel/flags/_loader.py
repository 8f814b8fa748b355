"""Flag definitions: polled from ``/flags/definitions`` (or shared through a cache
provider), compiled, and swapped in atomically.

One refresh at a time. ETag/304 keeps what we have. 401/403 clear the definitions and
slow the polling down (5x the interval, at most 5 min) until a 200; 402 clears them;
other failures keep the last good set and warn. The poller is a daemon thread started
on first use, restarted lazily in a forked child, and stopped by ``close()``.
"""

from __future__ import annotations

import inspect
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .._config import capped_seconds
from .._fork import (
    fork_safe_condition,
    fork_safe_event,
    fork_safe_lock,
    import_fork_safe,
    reset_in_child,
)
from .._log import logger, mark_internal_thread, suppress_instrumentation
from .._threads import start_supervised
from ..export import Clock, HttpTransport, TransportError
from ._evaluator import Definitions

DEFINITIONS_TIMEOUT = 10.0
_AUTH_BACKOFF_FACTOR = 5
_AUTH_BACKOFF_MAX = 300.0
_PROVIDER_TIMEOUT = 5.0
_CLOSE_JOIN = 2.0  # longest close() waits for a refresh in progress


class FlagDefinitionCacheProvider(Protocol):
    """Shares definitions between processes (contract FDL-11..14). Every method may be
    sync or async; errors are logged and never erase loaded definitions.

    ``on_flag_definitions_received`` is also given the response's ETag as ``etag=`` when
    it accepts that keyword (or ``**kwargs``): older providers keep working unchanged.
    ``get_flag_definitions`` may return the same object again to mean "unchanged"."""

    def should_fetch_flag_definitions(self) -> Any: ...

    def get_flag_definitions(self) -> Any: ...

    def on_flag_definitions_received(self, data: Mapping[str, Any]) -> Any: ...

    def shutdown(self) -> Any: ...


class DefinitionsLoader:
    def __init__(
        self,
        transport: HttpTransport,
        *,
        api_key: str,
        secret_key: str,
        poll_interval: float,
        clock: Clock,
        cache_provider: FlagDefinitionCacheProvider | None = None,
        on_change: Callable[[Definitions | None, Definitions | None], None] | None = None,
        on_refreshed: Callable[[bool], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self._api_key = api_key
        self._secret_key = secret_key
        self.poll_interval = poll_interval
        self._clock = clock
        self._provider = cache_provider
        self._provider_takes_etag = _takes_etag(cache_provider)
        self._installed: object = None  # the mapping the current definitions came from
        self._on_change = on_change
        self._on_refreshed = on_refreshed  # told whether each refresh from PostHog worked
        self._on_restart = on_restart  # counts restarts of the supervised poller thread
        self.definitions: Definitions | None = None
        self.etag: str | None = None
        self.requests = 0
        self._refresh_lock = fork_safe_lock()
        self._cond = fork_safe_condition()
        self._loaded = fork_safe_event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._next_wait = poll_interval
        self._fetched_by_caller = False
        reset_in_child(self._after_fork_in_child)

    @property
    def next_wait(self) -> float:
        """Seconds the poller waits before its next fetch: the poll interval, longer
        after the server refused the key (401/403), capped."""
        return self._next_wait

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start polling (idempotent): the first refresh runs on the poller thread."""
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._thread = start_supervised(
                "posthog_otel-flags",
                self._run,
                on_restart=self._on_restart,
                on_give_up=self._thread_gave_up,
                stopping=lambda: self._closed,
            )

    def _thread_gave_up(self) -> None:
        """The poller crashed too often and ended: the next ``start()`` starts another."""
        with self._cond:
            if self._thread is threading.current_thread():
                self._thread = None
        self._loaded.set()  # nobody waits for a first load that will not come from it

    @property
    def loaded(self) -> bool:
        """Whether the first refresh is over (whatever its outcome): nothing to wait for."""
        return self._loaded.is_set()

    def wait_loaded(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the first refresh to finish (whatever its outcome)."""
        self.start()
        return self._loaded.wait(capped_seconds(timeout))

    def close(self, timeout: float | None = None) -> None:
        """Stop polling; wait for a refresh in progress, then for the cache provider's
        ``shutdown`` (called once), at most ``timeout`` seconds in all (``None``:
        ``_CLOSE_JOIN``). The provider's code runs on a helper thread: however long it
        takes, ``close`` keeps its deadline."""
        budget = _CLOSE_JOIN if timeout is None else capped_seconds(timeout)
        deadline = time.monotonic() + budget
        with self._cond:
            first = not self._closed
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(min(budget, _CLOSE_JOIN))
        if self._provider is not None and first:
            helper = threading.Thread(
                target=self._shutdown_provider, name="posthog_otel-cache-shutdown", daemon=True
            )
            helper.start()
            helper.join(max(deadline - time.monotonic(), 0.0))

    def _shutdown_provider(self) -> None:
        assert self._provider is not None
        try:
            _resolve(self._provider.shutdown())
        except Exception:
            logger.warning("flag definition cache provider failed to shut down", exc_info=True)

    def _after_fork_in_child(self) -> None:
        # The locks are re-initialised by ``_fork``; the thread did not survive.
        self._thread = None  # restarted by the next start()
        self._fetched_by_caller = False  # the child fetches its own at once

    def refresh_now(self) -> None:
        """A refresh on the caller's thread that counts as the first load: the poller
        (started if it was not) then waits one interval before its own."""
        try:
            self.refresh()
        finally:
            self._loaded.set()
        with self._cond:
            if self._thread is None:  # a poller that starts now need not fetch at once
                self._fetched_by_caller = True
        self.start()

    def _run(self) -> None:
        mark_internal_thread()
        suppress_instrumentation()
        # Fetched already by ``refresh_now``: the first fetch waits its interval.
        fetch, self._fetched_by_caller = not self._fetched_by_caller, False
        while True:
            if fetch:
                try:
                    self.refresh()
                except Exception:
                    logger.exception("flag definitions refresh failed unexpectedly")
                finally:
                    self._loaded.set()
            fetch = True
            with self._cond:
                deadline = self._clock.monotonic() + self._next_wait
                while not self._closed and (remaining := deadline - self._clock.monotonic()) > 0:
                    self._clock.wait(self._cond, remaining, idle=True)
                if self._closed:
                    return

    # ---------------------------------------------------------------- refresh

    def refresh(self) -> None:
        """One refresh: through the cache provider if it says so, else from PostHog."""
        with self._refresh_lock:
            if self._provider is not None and not self._should_fetch():
                self._load_from_provider()
                return
            self._fetch()

    def _should_fetch(self) -> bool:
        assert self._provider is not None
        try:
            return bool(_resolve(self._provider.should_fetch_flag_definitions()))
        except Exception:
            logger.warning("flag definition cache: should_fetch failed; fetching", exc_info=True)
            return True

    def _load_from_provider(self) -> None:
        assert self._provider is not None
        try:
            data = _resolve(self._provider.get_flag_definitions())
        except Exception:
            logger.warning("flag definition cache: get failed; keeping definitions", exc_info=True)
            return
        if not isinstance(data, Mapping) or not isinstance(data.get("flags"), list):
            if self.definitions is None and data is None:
                self._fetch()  # nothing cached, nothing loaded: recover directly
            return
        if data is self._installed:
            return  # the provider's same object: unchanged, nothing to compile
        if self._install(data):
            self.etag = None  # our ETag described what we fetched, not the shared copy

    def _fetch(self) -> None:
        ok = self._fetch_once()
        if self._on_refreshed is not None:
            try:
                self._on_refreshed(ok)
            except Exception:
                logger.exception("flag definitions refresh callback failed")

    def _fetch_once(self) -> bool:
        """One request; ``True`` when PostHog answered with usable definitions (or 304)."""
        headers = {"Authorization": f"Bearer {self._secret_key}"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        self.requests += 1
        try:
            response = self._transport.request(
                "GET",
                "/flags/definitions",
                params={"token": self._api_key, "send_cohorts": ""},
                headers=headers,
                timeout=DEFINITIONS_TIMEOUT,
            )
        except TransportError as exc:
            logger.warning("flag definitions refresh failed (%s); keeping the last good set", exc)
            self._next_wait = self.poll_interval
            return False
        status = response.status
        if status == 304:
            self.etag = response.headers.get("etag") or self.etag
            self._next_wait = self.poll_interval
            return True
        if status in (401, 403):
            logger.error(
                "flag definitions refused (%d): check the secret key; local evaluation is off "
                "and flags are evaluated remotely",
                status,
            )
            self._clear()
            self._next_wait = min(self.poll_interval * _AUTH_BACKOFF_FACTOR, _AUTH_BACKOFF_MAX)
            return False
        if status == 402:
            logger.warning("flag definitions: quota exceeded (402); local evaluation is off")
            self._clear()
            self._next_wait = self.poll_interval
            return False
        self._next_wait = self.poll_interval
        if status != 200:
            logger.warning(
                "flag definitions refresh failed (HTTP %d); keeping the last good set", status
            )
            return False
        try:
            data = json.loads(response.content)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            logger.warning("flag definitions: malformed body; keeping the last good set")
            return False
        if not isinstance(data, dict) or not isinstance(data.get("flags"), list):
            if isinstance(data, dict) and "feature_flags" in (data.get("quotaLimited") or []):
                logger.warning("flag definitions: quota limited; keeping the last good set")
            else:
                logger.warning("flag definitions: unexpected body; keeping the last good set")
            return False
        self._install(data)
        self.etag = response.headers.get("etag")
        if self._provider is not None:
            extra = {"etag": self.etag} if self._provider_takes_etag else {}
            try:
                _resolve(self._provider.on_flag_definitions_received(data, **extra))
            except Exception:
                logger.warning("flag definition cache: store failed", exc_info=True)
        return True

    def _install(self, data: Mapping[str, Any]) -> bool:
        try:
            compiled = Definitions(data)
        except Exception:
            logger.warning(
                "flag definitions could not be compiled; keeping the last good set", exc_info=True
            )
            return False
        previous, self.definitions, self._installed = self.definitions, compiled, data
        self._changed(previous, compiled)
        return True

    def _clear(self) -> None:
        previous, self.definitions, self.etag = self.definitions, None, None
        self._installed = None
        self._changed(previous, None)

    def _changed(self, previous: Definitions | None, current: Definitions | None) -> None:
        if self._on_change is not None:
            try:
                self._on_change(previous, current)
            except Exception:
                logger.exception("flag definitions change callback failed")


def _takes_etag(provider: object) -> bool:
    """Whether the provider's ``on_flag_definitions_received`` accepts ``etag=``."""
    try:
        method = provider.on_flag_definitions_received  # type: ignore[attr-defined]
        parameters = inspect.signature(method).parameters.values()
    except (AttributeError, TypeError, ValueError):
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == "etag" and p.kind is not p.POSITIONAL_ONLY)
        for p in parameters
    )


def _resolve(result: Any) -> Any:
    """A provider's answer, awaited with a time limit when it is a coroutine."""
    if inspect.isawaitable(result):
        # Usually imported already (the provider is async); on the poller, fork-safely.
        asyncio: Any = sys.modules.get("asyncio") or import_fork_safe("asyncio")

        async def bounded() -> Any:
            return await asyncio.wait_for(result, _PROVIDER_TIMEOUT)

        return asyncio.run(bounded())
    return result
