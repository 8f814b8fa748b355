"""Feature flags: local evaluation identical to PostHog's (work in progress).

``Definitions`` compiles a ``/flags/definitions`` payload once; ``evaluate`` decides a
flag locally or raises ``Unresolved`` when only the server can.
"""

from ._errors import Inconclusive, NeedsServer, Unresolved
from ._evaluator import CompiledFlag, Definitions

__all__ = ["CompiledFlag", "Definitions", "Inconclusive", "NeedsServer", "Unresolved"]
