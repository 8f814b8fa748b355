"""Feature flags: local evaluation identical to PostHog's, remote evaluation, results.

``Definitions`` compiles a ``/flags/definitions`` payload once; ``evaluate`` decides a
flag locally or raises ``Unresolved`` when only the server can. ``FlagsService`` is what
a client reads flags through (``Client.flags``), built from a ``FlagsConfig``. The
submodules load on first use, so that a client which never reads a flag does not pay
for them.
``explain_flag`` and ``why_not_local`` say how a flag is decided, for people (the
``posthog-otel`` command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._compiled import CompiledFlag
    from ._config import FlagsConfig
    from ._errors import Inconclusive, NeedsServer, Unresolved
    from ._evaluator import Definitions
    from ._explain import Explanation, explain_flag, why_not_local
    from ._loader import FlagDefinitionCacheProvider
    from ._overrides import group_inputs
    from ._results import FlagEvaluations, FlagResult, FlagValue
    from ._service import Emit, FlagsService

__all__ = [
    "CompiledFlag",
    "Definitions",
    "Emit",
    "Explanation",
    "FlagDefinitionCacheProvider",
    "FlagEvaluations",
    "FlagResult",
    "FlagValue",
    "FlagsConfig",
    "FlagsService",
    "Inconclusive",
    "NeedsServer",
    "Unresolved",
    "explain_flag",
    "group_inputs",
    "why_not_local",
]

_WHERE = {
    "CompiledFlag": "._compiled",
    "Definitions": "._evaluator",
    "Emit": "._service",
    "Explanation": "._explain",
    "explain_flag": "._explain",
    "group_inputs": "._overrides",
    "why_not_local": "._explain",
    "FlagDefinitionCacheProvider": "._loader",
    "FlagEvaluations": "._results",
    "FlagResult": "._results",
    "FlagValue": "._results",
    "FlagsConfig": "._config",
    "FlagsService": "._service",
    "Inconclusive": "._errors",
    "NeedsServer": "._errors",
    "Unresolved": "._errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'posthog_otel.flags' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
