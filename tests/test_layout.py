"""The package's layout rules (issue: one home per concern), checked on the source:

- no import cycle between our modules, counting ``TYPE_CHECKING`` and function-level
  imports (a cycle hidden in a function is still a cycle in the design);
- ``flags`` never imports the client, and the event pipeline never imports an
  integration (they sit on top of it, not under it);
- no module reaches a ``_``-prefixed attribute of an object from another package of
  ours through ``client._x`` style access: integrations use ``client.pipeline`` and
  ``client.flags``;
- no module grows past ~600 lines, and ``Client`` stays wiring plus delegates.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "posthog_otel"
ROOT = "posthog_otel"

INTEGRATIONS = {
    f"{ROOT}.logging",
    f"{ROOT}.structlog",
    f"{ROOT}.otel",
    f"{ROOT}.otel_logs",
    f"{ROOT}.otel_traces",
    f"{ROOT}.middleware",
    f"{ROOT}.openfeature",
    f"{ROOT}.testing",
}
PIPELINE = {
    f"{ROOT}._ids",
    f"{ROOT}._assembly",
    f"{ROOT}._before_send",
    f"{ROOT}.pipeline",
    f"{ROOT}._options",
    f"{ROOT}._snapshot",
    f"{ROOT}.export",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` inside ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _ours(name: str) -> str | None:
    """The module of ours that importing ``name`` loads (the longest known prefix)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    """Every module of ours that ``module`` imports, anywhere in its source."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _ours(alias.name)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                # ``from . import x``: x may be a submodule or a name of the package.
                target = _ours(f"{base}.{alias.name}") or _ours(base)
                if target:
                    found.add(target)
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle among our modules, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_import_graph_is_read_from_the_source():
    # The walker must see the three kinds of imports it is there to catch.
    assert f"{ROOT}.client" in GRAPH[f"{ROOT}._default"]  # top level
    assert f"{ROOT}.pipeline" in GRAPH[f"{ROOT}.logging"]  # under TYPE_CHECKING
    assert f"{ROOT}.client" in GRAPH[f"{ROOT}._integration"]  # function level


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_flags_never_import_the_client_or_the_pipeline():
    for module in MODULES:
        if module.startswith(f"{ROOT}.flags"):
            reached = _reachable(module)
            assert f"{ROOT}.client" not in reached, module
            assert f"{ROOT}.pipeline" not in reached, module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _ours(m) and m in PIPELINE))
def test_the_event_pipeline_never_imports_an_integration(module):
    reached = _reachable(module) | {module}
    assert not any(
        target == integration or target.startswith(integration + ".")
        for target in reached
        for integration in INTEGRATIONS
    ), module


def _private_reaches(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls`` and ``_name`` is not a dunder: a
    reach into another object's private state."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
            continue
        if isinstance(owner, ast.Name) and owner.id in _MODULE_ALIASES.get(path.name, ()):
            continue
        found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


# Our own modules, imported under a name: using their private helpers is within the
# package (the rule is about objects' state).
_MODULE_ALIASES = {"__init__.py": ()}


@pytest.mark.parametrize(
    "name",
    ["logging.py", "structlog.py", "otel.py", "otel_logs.py", "middleware.py", "openfeature.py"],
)
def test_integrations_touch_no_private_attribute_of_another_object(name):
    assert _private_reaches(PACKAGE / name) == []


def test_no_module_is_over_about_600_lines():
    long = {
        module: n
        for module, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > 630
    }
    assert long == {}


def test_client_is_wiring_plus_delegates():
    # ≤ 400 lines when the restructuring ended; later features add one-line delegates.
    assert len((PACKAGE / "client.py").read_text().splitlines()) <= 500


def _private_module_owner(target: str) -> str | None:
    """The package whose private module ``target`` is (``posthog_otel.flags`` for
    ``posthog_otel.flags._results``), or ``None`` when every part is public."""
    parts = target.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def test_private_modules_are_used_only_inside_their_package():
    """``flags``, ``export`` and ``testing`` are used from outside through their
    package's public names (the documented seam), not their ``_`` modules."""
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            owner = _private_module_owner(target)
            if owner and owner != ROOT and not (module == owner or module.startswith(owner + ".")):
                wrong.append(f"{module} imports {target}")
    assert wrong == []
