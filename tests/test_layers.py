"""The layers of the package: imports only point down, and no import cycle exists.

Read statically from the source (an import inside a function counts; one
under ``if TYPE_CHECKING:`` does not), so the test sees lazy imports too and
does not depend on what happens to be installed. docs/architecture.md draws
the same layers.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import buyerjourney

PACKAGE = Path(buyerjourney.__file__).parent

# Lowest first. A module may import modules of its own layer or lower ones.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("buyerjourney._version", "buyerjourney.errors")),
    ("core", ("buyerjourney._core",)),
    ("core faces", ("buyerjourney.scoring", "buyerjourney.policies", "buyerjourney.presets")),
    ("engine", ("buyerjourney._engine", "buyerjourney._report")),
    ("pipeline", ("buyerjourney._pipeline",)),
    ("analytics", ("buyerjourney._analytics", "buyerjourney.analytics")),
    ("bulk", ("buyerjourney.bulk",)),
    ("adapters", ("buyerjourney._adapters",)),
    ("checks", ("buyerjourney._checks",)),
    ("testing", ("buyerjourney.testing",)),
    (
        "face and command",
        ("buyerjourney", "buyerjourney.cli", "buyerjourney._commands", "buyerjourney.__main__"),
    ),
]

CORE_MAY_IMPORT = {"attrs", "statemachine", "buyerjourney"}
FORBIDDEN_IN_CORE = {"numpy", "hypothesis", "sqlite3", "psycopg", "pyarrow", "pandas"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"module {module} is in no layer; add it to LAYERS")
    return best


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id.endswith("TYPE_CHECKING")) or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node):
        for child in node.orelse:
            yield from _imports_in(child)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports_in(child)


def imported(module: str) -> tuple[set[str], set[str]]:
    """(buyerjourney modules, other top-level packages) that *module* imports."""
    path = MODULES[module]
    tree = ast.parse(path.read_text("utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    ours: set[str] = set()
    theirs: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = []
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                names.append(candidate if candidate in MODULES else base)
        for name in names:
            if name == "buyerjourney" or name.startswith("buyerjourney."):
                ours.add(name)
            else:
                theirs.add(name.partition(".")[0])
    ours.discard(module)
    return ours, theirs


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    ours, _ = imported(module)
    mine = layer_of(module)
    upward = sorted(
        f"{name} (layer {LAYERS[layer_of(name)][0]!r})" for name in ours if layer_of(name) > mine
    )
    assert upward == [], f"{module} (layer {LAYERS[mine][0]!r}) imports a higher layer"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) <= 2))
def test_the_core_imports_only_the_standard_library_attrs_and_statemachine(module: str) -> None:
    _, theirs = imported(module)
    allowed = set(sys.stdlib_module_names) | CORE_MAY_IMPORT
    assert theirs - allowed == set()
    assert theirs & FORBIDDEN_IN_CORE == set()


def test_no_import_cycle() -> None:
    # Importing a submodule runs its packages' __init__ first; that edge is no cycle.
    graph = {
        m: {n for n in imported(m)[0] & set(MODULES) if not m.startswith(n + ".")} for m in MODULES
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer_of(module)
