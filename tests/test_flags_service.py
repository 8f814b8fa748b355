"""The flag service on its own: built without a client (its events leave through
``emit``), compiled flags and results that reads never change, and a flag package whose
modules import each other without a cycle."""

from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason

from posthog_otel import PostHogProvider
from posthog_otel._stats import StatsRecorder
from posthog_otel.export import HttpTransport, SystemClock
from posthog_otel.flags import FlagResult
from posthog_otel.flags._service import MINIMAL_EVENT_PROPERTIES, FlagsService
from posthog_otel.messages import Capture
from posthog_otel.testing import FakePostHog

from .conftest import API_KEY

SECRET = "phs_test_secret"
PACKAGE = Path(__file__).resolve().parent.parent / "posthog_otel"


def _flag(key: str, fid: int, **extra: object) -> dict[str, object]:
    return {
        "id": fid,
        "key": key,
        "version": 4,
        "active": True,
        "filters": {
            "groups": [
                {
                    "properties": [{"key": "plan", "value": "pro", "type": "person"}],
                    "rollout_percentage": 100,
                },
                {"properties": [], "rollout_percentage": 30},
            ],
            "multivariate": {
                "variants": [
                    {"key": "control", "rollout_percentage": 50},
                    {"key": "test", "rollout_percentage": 50},
                ]
            },
            "payloads": {"test": json.dumps({"size": 2}), "control": json.dumps([1])},
        },
        **extra,
    }


DEFINITIONS = {
    "flags": [
        _flag("no-exp", 1, has_experiment=False),
        _flag("exp", 2, has_experiment=True),
        _flag("unknown-exp", 3),
    ],
    "group_type_mapping": {},
    "cohorts": {},
    "minimal_flag_called_events": True,
}
PRO = {"plan": "pro"}


def test_the_service_needs_no_client_its_exposures_go_to_emit():
    from posthog_otel.flags import FlagsConfig, FlagsService

    emitted: list[tuple[Capture, frozenset[str] | None]] = []
    stats = StatsRecorder()
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        transport = HttpTransport(server.url, user_agent="posthog-otel-tests")
        service = FlagsService(
            FlagsConfig(request_timeout=5.0),
            transport,
            api_key=API_KEY,
            secret_key=SECRET,
            stats=stats,
            clock=SystemClock(),
            emit=lambda message, keep: emitted.append((message, keep)),
        )
        try:
            assert service.wait_loaded(10)
            for key in ("no-exp", "exp", "unknown-exp", "no-exp"):  # the last: deduplicated
                result = service.result(key, "u1", None, PRO, None, False, False, None, True)
                assert result is not None and result.locally_evaluated
            service.set_person_overrides("not a mapping")  # counted in the stats given
        finally:
            service.close(5)
            transport.close()
    assert [m.properties["$feature_flag"] for m, _ in emitted] == ["no-exp", "exp", "unknown-exp"]
    (minimal, keep), (full, full_keep), (unknown, unknown_keep) = emitted
    # has_experiment False under the server's minimal gate: the minimal form.
    assert keep == MINIMAL_EVENT_PROPERTIES
    assert minimal.event == "$feature_flag_called" and minimal.distinct_id == "u1"
    assert minimal.properties == {
        "$feature_flag": "no-exp",
        "$feature_flag_response": result.get_value(),
        "$feature/no-exp": result.get_value(),
        "locally_evaluated": True,
        "$feature_flag_payload": result.payload,
        "$feature_flag_id": 1,
        "$feature_flag_version": 4,
        "$feature_flag_has_experiment": False,
    }
    assert minimal.groups is None
    # An experiment, or nothing said about one: the full event.
    assert full_keep is None and full.properties["$feature_flag_has_experiment"] is True
    assert full.properties["$feature_flag_id"] == 2
    assert unknown_keep is None and "$feature_flag_has_experiment" not in unknown.properties
    assert stats.corrected["invalid_flag_properties"] == 1


def test_reads_change_neither_compiled_flags_nor_results(make_client):
    """Compiled flags and results are plain data: no layer memoizes on them (the
    OpenFeature provider used to keep its reasons in ``flag.extras`` and its metadata on
    the frozen result)."""
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        client = make_client(host=server.url, secret_key=SECRET)
        service = client.flags
        assert service is client.flags and isinstance(service, FlagsService)
        assert service.wait_loaded(10)
        definitions = service.definitions()
        assert definitions is not None

        def state() -> dict[str, dict[str, str]]:
            return {
                key: {name: repr(value) for name, value in vars(flag).items()}
                for key, flag in definitions.flags.items()
            }

        before = state()
        provider = PostHogProvider(client)
        api.set_provider_and_wait(provider)
        try:
            details = api.get_client().get_string_details(
                "no-exp", "none", EvaluationContext("u1", PRO)
            )
        finally:
            api.shutdown()
        assert details.reason == Reason.TARGETING_MATCH
        assert details.flag_metadata["flag_id"] == 1
        result = client.get_feature_flag_result("exp", "u2", person_properties=PRO)
        client.evaluate_flags("u3", person_properties=PRO).get_flag("unknown-exp")
        assert state() == before
        assert result is not None
        assert set(vars(result)) == {f.name for f in fields(FlagResult)}
        for flag in definitions.flags.values():
            for local in flag.results.values():
                assert set(vars(local)) == {f.name for f in fields(FlagResult)}


def test_explain_says_how_a_local_value_was_decided(make_client):
    with FakePostHog(flag_definitions=DEFINITIONS) as server:
        service = make_client(host=server.url, secret_key=SECRET).flags
        assert service.wait_loaded(10)
        inputs = service.inputs("u1", None, PRO, None)
        assert inputs == ("u1", {}, PRO, {})
        explained = service.explain("no-exp", *inputs)
        assert explained is not None and explained[1] == "targeted"
        outcomes = set()
        for n in range(40):  # outside the plan: the 30 % split decides (or no condition)
            free = service.inputs(f"u{n}", None, {"plan": "free"}, None)
            explained = service.explain("no-exp", *free)
            assert explained is not None
            outcomes.add(explained[1])
        assert outcomes == {"split", "no_match"}


# ---------------------------------------------------------------- import graph


def _imports(path: Path, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``TYPE_CHECKING`` blocks and
    function bodies included), as absolute names."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # ``from . import _values``: the submodule, not the package.
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            found.update(submodules or {target})
    return found


def _flags_graph() -> dict[str, set[str]]:
    """The flag package's modules and what each imports of the package or the client."""
    paths = {
        ("posthog_otel.flags" if p.stem == "__init__" else f"posthog_otel.flags.{p.stem}"): p
        for p in (PACKAGE / "flags").glob("*.py")
    }
    known = set(paths)
    return {
        name: {
            imported
            for imported in _imports(path, name, path.stem == "__init__", known)
            if imported in known or imported == "posthog_otel.client"
        }
        for name, path in paths.items()
    }


def test_the_flag_package_has_no_import_cycle_and_does_not_import_the_client():
    graph = _flags_graph()
    assert not [m for m, deps in graph.items() if "posthog_otel.client" in deps]
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, ())):
            if dep in path:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep in graph:
                visit(dep, [*path, dep])

    for module in sorted(graph):
        visit(module, [module])
    assert not cycles, cycles[0]


def test_the_openfeature_provider_uses_public_seams_only():
    """No ``_``-prefixed attribute of another object (the client, the flag service) and
    no private module of the flag package."""
    tree = ast.parse((PACKAGE / "openfeature.py").read_text())
    reaches = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    private_modules = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("flags.")
        and node.module.split(".")[1].startswith("_")
    ]
    assert not reaches and not private_modules, (reaches, private_modules)
