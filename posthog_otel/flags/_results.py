"""What a flag read returns: ``FlagResult`` for one flag, ``FlagEvaluations`` for a
snapshot of several (one local pass, at most one request)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._log import RateLimitedWarner, logger

FlagValue = bool | str
_payload_warner = RateLimitedWarner()


@dataclass(frozen=True)
class FlagResult:
    """One flag's evaluation: value, payload and where it came from.

    ``has_experiment`` and ``minimal_exposure`` are what its ``$feature_flag_called``
    event needs, as they were when the result was produced (FFT-09): whether PostHog
    says the flag runs an experiment (``None`` when it did not say), and whether the
    server asked for minimal exposure events then. Not compared, not shown."""

    key: str
    enabled: bool
    variant: str | None = None
    payload: Any = None
    reason: str | None = None
    locally_evaluated: bool = False
    id: int | None = None
    version: int | None = None
    request_id: str | None = None
    evaluated_at: int | None = field(default=None, repr=False, compare=False)
    """When PostHog evaluated it (ms since the epoch, from ``/flags``); ``None`` locally."""
    reason_code: str | None = field(default=None, repr=False, compare=False)
    """PostHog's reason code (``condition_match``...): ``reason`` is its description,
    as posthog-python reports it."""
    has_experiment: bool | None = field(default=None, repr=False, compare=False)
    minimal_exposure: bool = field(default=False, repr=False, compare=False)

    def get_value(self) -> FlagValue:
        """The variant if there is one, else whether the flag is enabled."""
        return self.variant if self.variant is not None else self.enabled


def decode_payload(payload: Any, key: str, *, every_time: bool = False) -> Any:
    """A payload as it travels (a JSON string) decoded; one that is not valid JSON
    (``NaN``/``Infinity`` included) is ``None``, with a warning: rate-limited per flag
    for reads, ``every_time`` for the compiler (once per definitions load)."""
    if not isinstance(payload, str):
        return payload
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, TypeError, RecursionError):
        message = "flag %r: its payload is not valid JSON; read as None"
        if every_time:
            logger.warning(message, key)
        else:
            _payload_warner.warn(f"invalid_payload:{key}", message, key)
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def experiment_flag(value: Any) -> bool | None:
    """A definition's or answer's ``has_experiment``: a boolean, else unknown (``None``)."""
    return value if isinstance(value, bool) else None


Exposure = Callable[[str, "FlagResult | None"], None]


@dataclass(frozen=True)
class FlagEvaluations:
    """An immutable snapshot of flag values for one person (``Client.evaluate_flags``).

    Reading a flag with ``is_enabled`` or ``get_flag`` sends its ``$feature_flag_called``
    event once; ``get_flag_payload`` is silent. Pass the snapshot to
    ``capture(..., flags=snapshot)`` to attach exactly these values to an event.
    """

    distinct_id: str | None
    results: Mapping[str, FlagResult]
    _expose: Exposure | None = field(default=None, repr=False, compare=False)
    _filtered: bool = field(default=False, repr=False, compare=False)
    # Keys read so far. A dict, so that ``setdefault`` tells the first reader atomically:
    # no lock, and so nothing a fork could leave held.
    _accessed: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def _read(self, key: str) -> FlagResult | None:
        """Record the access and send ``$feature_flag_called`` once (``flag_missing``
        for a key an original snapshot does not hold)."""
        result = self.results.get(key)
        if result is None and self._filtered:
            return None
        mine = object()
        first = self._accessed.setdefault(key, mine) is mine
        if first and self._expose is not None:
            self._expose(key, result)
        return result

    def is_enabled(self, key: str, default_value: bool = False) -> bool:
        result = self._read(key)
        return default_value if result is None else result.enabled

    def get_flag(self, key: str) -> FlagValue | None:
        result = self._read(key)
        return None if result is None else result.get_value()

    def get_flag_payload(self, key: str) -> Any:
        result = self.results.get(key)
        return None if result is None else result.payload

    def only(self, keys: Iterable[str]) -> FlagEvaluations:
        """A snapshot restricted to ``keys`` (unknown keys are left out, with a warning)."""
        wanted = set(keys)
        unknown = wanted.difference(self.results)
        if unknown:
            logger.warning(
                "FlagEvaluations.only: no such flags in the snapshot: %s", sorted(unknown)
            )
        return FlagEvaluations(
            self.distinct_id,
            {k: r for k, r in self.results.items() if k in wanted},
            self._expose,
            True,
        )

    def only_accessed(self) -> FlagEvaluations:
        """A snapshot of the flags read so far (what the code branched on); empty before
        any read."""
        accessed = self.results.keys() & self._accessed.copy().keys()
        return self.only(accessed)

    @property
    def keys(self) -> list[str]:
        return sorted(self.results)

    def event_properties(self) -> dict[str, Any]:
        """``$feature/<key>`` for every flag and ``$active_feature_flags``."""
        properties: dict[str, Any] = {
            f"$feature/{key}": result.get_value() for key, result in self.results.items()
        }
        properties["$active_feature_flags"] = sorted(
            key for key, result in self.results.items() if result.get_value() is not False
        )
        return properties
