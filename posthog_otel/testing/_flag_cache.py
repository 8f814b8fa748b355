"""An in-memory flag definition cache provider, for tests and as the protocol's example."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any


class InMemoryFlagDefinitionCache:
    """Implements ``FlagDefinitionCacheProvider`` with a dict; records every call.

    ``should_fetch`` decides what ``should_fetch_flag_definitions`` answers (a callable
    may raise, to test the fallback); ``data`` is what ``get_flag_definitions`` returns.
    """

    def __init__(self, *, should_fetch: Any = True, data: Mapping[str, Any] | None = None) -> None:
        self.should_fetch = should_fetch
        self.data = data
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def _record(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)

    def should_fetch_flag_definitions(self) -> bool:
        self._record("should_fetch")
        return bool(self.should_fetch() if callable(self.should_fetch) else self.should_fetch)

    def get_flag_definitions(self) -> Mapping[str, Any] | None:
        self._record("get")
        if isinstance(self.data, Exception):
            raise self.data
        return self.data

    def on_flag_definitions_received(self, data: Mapping[str, Any]) -> None:
        self._record("received")
        self.data = dict(data)

    def shutdown(self) -> None:
        self._record("shutdown")
