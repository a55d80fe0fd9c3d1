"""The import structure of `implicitx`: no cycles, every public module importable
alone.

A cycle among modules works, if at all, only by import order: one new import
somewhere breaks it. The graph is read from the source (module-level and
function-level `import` statements alike): `import implicitx.a.b` runs
`implicitx/a/__init__.py` first, so a module importing `implicitx.a.b` from outside
package `a` depends on that package's `__init__` as well.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import implicitx


SRC = Path(implicitx.__file__).parent
PUBLIC = [
    "implicitx",
    "implicitx.mirror",
    "implicitx.projection",
    "implicitx.prox",
    "implicitx.solvers",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in SRC.rglob("*.py")}


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The implicitx modules an `from ... import ...` statement names."""
    if node.level == 0:
        base = node.module or ""
    else:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the implicitx modules (and packages) its import runs."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = _resolve(module, path, node)
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name not in modules or name == module:
                    continue
                targets.add(name)
                # Importing `p.q` from outside package `p` runs `p/__init__.py`.
                parent = name.rpartition(".")[0]
                while parent and not (module + ".").startswith(parent + "."):
                    targets.add(parent)
                    parent = parent.rpartition(".")[0]
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph`, as a list of modules, or `None`."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_package_imports():
    graph = import_graph()
    # The conditions use the operator bases, and the package imports its modules.
    assert "implicitx._conditions._proximal_gradient" in graph["implicitx._conditions"]
    assert any(t.startswith("implicitx._") for t in graph["implicitx._argmin"])


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", PUBLIC)
def test_public_module_imports_alone(module):
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
