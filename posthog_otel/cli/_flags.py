"""``posthog-otel flags eval KEY --distinct-id ID``: a flag's local value and why.

The definitions are fetched with the secret key (the environment's, or
``--secret-key``) and the flag evaluated by the same compiler and evaluator a client
uses; the answer says which condition matched. Exit codes: 0 decided locally, 1 the
definitions could not be loaded or do not have the flag, 2 only the server can decide
(the reason is printed: a static cohort, experience continuity, a property that was not
given...)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..flags import Unresolved, explain_flag, group_inputs, why_not_local
from ._common import add_connection_options, fetch_definitions, pairs, parse_value, read_settings
from ._common import transport as make_transport

_DECISIONS = {
    "inactive": "the flag is disabled",
    "enrollment": "decided by early-access enrollment",
    "holdout": "in the experiment's holdout group",
    "no_match": "no condition matched",
}


def add_parser(commands: Any) -> None:
    flags = commands.add_parser("flags", help="feature flag tools")
    sub = flags.add_subparsers(dest="flags_command", metavar="COMMAND", required=True)
    parser = sub.add_parser(
        "eval",
        help="evaluate a flag locally and say why",
        description="Evaluate KEY locally with the current definitions and print the value, "
        "the reason and the condition that matched. Exit code 2 when only the server can "
        "decide. Property values are JSON when they read as a number, true, false or null.",
    )
    parser.add_argument("key", metavar="KEY", help="the flag key")
    parser.add_argument("--distinct-id", required=True, help="the person's distinct id")
    parser.add_argument(
        "--prop", action="append", metavar="NAME=VALUE", help="a person property (repeatable)"
    )
    parser.add_argument("--group", action="append", metavar="TYPE=KEY", help="a group (repeatable)")
    parser.add_argument(
        "--group-prop",
        action="append",
        metavar="TYPE.NAME=VALUE",
        help="a property of a group given with --group (repeatable)",
    )
    parser.add_argument("--device-id", help="the device id (flags bucketed by device)")
    add_connection_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        person = {k: parse_value(v) for k, v in pairs(args.prop, "--prop").items()}
        groups = pairs(args.group, "--group")
        group_props = _group_properties(args.group_prop, groups)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    settings = read_settings(args)
    if settings.host_problem:
        print(f"error: the host setting is invalid: {settings.host_problem}")
        return 1
    http = make_transport(settings)
    try:
        fetched = fetch_definitions(http, settings)
    finally:
        http.close()
    definitions = fetched.definitions
    if definitions is None:
        print(f"error: flag definitions cannot be loaded: {fetched.problem}")
        return 1
    flag = definitions.flags.get(args.key)
    if flag is None:
        print(
            f"error: flag {args.key!r} is not in the definitions ({len(definitions.flags)} flags)"
        )
        return 1
    groups_, group_props_ = group_inputs(groups, group_props, {})
    print(f"flag       {args.key}")
    try:
        explained = explain_flag(
            definitions, flag, args.distinct_id, groups_, person, group_props_, args.device_id
        )
    except Unresolved as exc:
        why = why_not_local(definitions, flag) or f"{exc.reason}: {exc}"
        print(f"value      cannot be decided locally: {why}")
        reads = _properties_read(flag.definition)
        if reads and why.startswith("missing_context"):
            print(f"           the flag reads: {', '.join(reads)} (give them with --prop)")
        print("           (a client asks the server: POST /flags)")
        return 2
    except Exception as exc:  # a definition the evaluator cannot read (a client's read
        # logs it and asks the server too): said, never a traceback
        print(
            "value      cannot be decided locally: a definition this SDK cannot read "
            f"({type(exc).__name__}: {exc})"
        )
        print("           (a client asks the server: POST /flags)")
        return 2
    result = explained.result
    value = result.variant if result.variant is not None else result.enabled
    print(f"value      {json.dumps(value)}")
    if result.payload is not None:
        print(f"payload    {json.dumps(result.payload, default=str)}")
    print(f"reason     {result.reason}: {_how(explained.decision, explained.condition, flag)}")
    return 0


def _how(decision: str, condition: int | None, flag: Any) -> str:
    if condition is not None:
        return f"condition {condition + 1} of {len(flag.conditions)} matched ({decision})"
    if decision == "static":
        return "the same for everyone (static)"
    return _DECISIONS.get(decision, decision)


def _properties_read(definition: Any) -> list[str]:
    """The property names the flag's conditions read (for "give them with --prop")."""
    names: list[str] = []
    filters = definition.get("filters") if isinstance(definition, dict) else None
    conditions = filters.get("groups") if isinstance(filters, dict) else None
    for condition in conditions if isinstance(conditions, list) else []:
        props = condition.get("properties") if isinstance(condition, dict) else None
        for prop in props if isinstance(props, list) else []:
            if not isinstance(prop, dict) or prop.get("type") not in ("person", "group"):
                continue
            name = prop.get("key")
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def _group_properties(items: list[str] | None, groups: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``--group-prop company.plan=pro`` arguments, by group type."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in pairs(items, "--group-prop").items():
        group_type, dot, prop = name.partition(".")
        if not dot or not prop:
            raise ValueError(f"--group-prop must be TYPE.NAME=VALUE, got {name}={value}")
        if group_type not in groups:
            raise ValueError(f"--group-prop {name}: no --group {group_type}=KEY given")
        out.setdefault(group_type, {})[prop] = parse_value(value)
    return out
