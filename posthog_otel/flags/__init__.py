"""Feature flags: local evaluation identical to PostHog's, remote evaluation, results.

``Definitions`` compiles a ``/flags/definitions`` payload once; ``evaluate`` decides a
flag locally or raises ``Unresolved`` when only the server can.
"""

from ._errors import Inconclusive, NeedsServer, Unresolved
from ._evaluator import CompiledFlag, Definitions
from ._loader import FlagDefinitionCacheProvider
from ._results import FlagEvaluations, FlagResult

__all__ = [
    "CompiledFlag",
    "Definitions",
    "FlagDefinitionCacheProvider",
    "FlagEvaluations",
    "FlagResult",
    "Inconclusive",
    "NeedsServer",
    "Unresolved",
]
