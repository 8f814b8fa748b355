"""The flag service's configuration: a frozen value, built and validated by the client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlagsConfig:
    """How flags are fetched and cached (see ``docs/configuration.md``)."""

    poll_interval: float = 30.0
    request_timeout: float = 3.0
    max_retries: int = 1
    initial_load_timeout: float = 1.0
    cache_provider: object | None = None
    result_cache_ttl: float | None = None
    disable_geoip: bool = True
