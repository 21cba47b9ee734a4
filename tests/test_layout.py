"""The layout's promises: stages import one way (no cycle between packages), nothing finds a module
through a list of names, and the runtime packages run without SymPy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "symdl"
#: Runtime packages: what a trained model, a user's test or `symdl train` imports.
RUNTIME = ("symdl", "symdl.kernels", "symdl.optim", "symdl.check", "symdl.nn", "symdl.train", "symdl.data",
           "symdl.testing", "symdl.files", "symdl.cli")


def _unit(module: str) -> str:
    """The stage a module belongs to: its first-level package or top-level module under symdl."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Modules of symdl imported when ``path`` is imported (module level, not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    for node in tree.body:
        statements = [node]
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports nothing at run time
            continue
        for statement in statements:
            if isinstance(statement, ast.Import):
                found |= {a.name for a in statement.names if a.name.startswith("symdl")}
            elif isinstance(statement, ast.ImportFrom):
                base = statement.module or ""
                if statement.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - statement.level + 1] + [base])
                if base.startswith("symdl"):
                    found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(_module_name(path))
        targets = {_unit(m) for m in _top_level_imports(path)} - {unit, "symdl"}
        graph.setdefault(unit, set()).update(targets)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_stages_import_one_way() -> None:
    graph = _graph()
    assert len(graph) > 10, "the scan found too few packages to mean anything"
    assert _cycle(graph) is None, f"import cycle between stages: {' -> '.join(_cycle(graph) or [])}"


def test_a_planted_cycle_is_found() -> None:
    graph = {**_graph()}
    assert "symdl.catalog" in graph["symdl.verify"]
    graph["symdl.catalog"] = {*graph["symdl.catalog"], "symdl.verify"}
    assert _cycle(graph) is not None


def test_no_module_is_found_through_a_list_of_names() -> None:
    """importlib only loads the user's own targets (``file.py:f``), never symdl's modules."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "import_module" and node.args
                    and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("symdl")):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value.startswith("symdl.") and node.value.replace(".", "").replace("_", "").isalnum()
                    and path.name != "__main__.py" and _looks_like_registry(path, node)):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def _looks_like_registry(path: Path, node: ast.Constant) -> bool:
    """A module path held in a tuple, list or dict value: how the old registries named modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for parent in ast.walk(tree):
        if isinstance(parent, (ast.Tuple, ast.List)) and node in parent.elts:
            return True
        if isinstance(parent, ast.Dict) and node in parent.values:
            return True
    return False


@pytest.mark.parametrize("module", RUNTIME)
def test_runtime_imports_no_sympy(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in ('sympy', 'scipy', 'torch') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import {module} imports {result.stdout.strip()}"
