"""``FlagsConfig``: the flag service's options, as one frozen value.

The client builds it from its own (validated) arguments; the service only reads it.
The defaults are the client's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._loader import FlagDefinitionCacheProvider


@dataclass(frozen=True)
class FlagsConfig:
    """How the flag service loads definitions and asks the server.

    ``poll_interval``: seconds between definition polls (with a secret key).
    ``request_timeout`` / ``max_retries``: of one ``/flags`` request.
    ``initial_load_timeout``: how long the first read waits for the first definitions.
    ``cache_provider``: a shared cache of definitions (``FlagDefinitionCacheProvider``).
    ``result_cache_ttl``: seconds a remote answer is reused for the same inputs (off
    when ``None``). ``disable_geoip``: the default of a ``/flags`` request's
    ``geoip_disable``.
    """

    poll_interval: float = 30.0
    request_timeout: float = 3.0
    max_retries: int = 1
    initial_load_timeout: float = 1.0
    cache_provider: FlagDefinitionCacheProvider | None = None
    result_cache_ttl: float | None = None
    disable_geoip: bool = True
