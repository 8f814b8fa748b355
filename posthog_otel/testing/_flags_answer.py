"""What the fake ``/flags`` answers when no test set an answer: the server's own flag
definitions, evaluated with the library's evaluator (moved out of ``_server`` to keep it
one job and under the size limit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def evaluate_definitions(definitions: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
    """A v2 ``/flags`` answer computed from ``definitions`` for the request's person,
    groups and properties. A flag only the real server could decide (static cohort,
    experience continuity, a property not sent) is left out of the answer, so the
    client reads it as unknown (its default)."""
    from ..flags import Definitions

    compiled = Definitions(definitions)
    wanted = request.get("flag_keys_to_evaluate")
    flags: dict[str, Any] = {}
    for key, flag in compiled.flags.items():
        if isinstance(wanted, list) and key not in wanted:
            continue
        try:
            value = compiled.evaluate(
                key,
                str(request["distinct_id"]),
                groups=request.get("groups") or {},
                person_properties=request.get("person_properties") or {},
                group_properties=request.get("group_properties") or {},
            )
        except Exception:
            continue
        enabled = value is not False and value is not None
        payload = flag.payloads.get(str(value).lower() if value is True else str(value))
        flags[key] = {
            "key": key,
            "enabled": enabled,
            "variant": value if isinstance(value, str) else None,
            "reason": {
                "code": "condition_match" if enabled else "no_condition_match",
                "description": "Matched condition set 1"
                if enabled
                else "No matching condition set",
            },
            "metadata": {
                "id": flag.id,
                "version": flag.version,
                "payload": payload if enabled else None,
            },
        }
    return {"flags": flags}
