"""The package's shape: no import cycle between GovLake's modules (function-level imports included), and no
production module imports the test-data generator (``sample/``)."""
from __future__ import annotations

import ast
from pathlib import Path

from govlake.core.config import REPO_ROOT


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """GovLake and sample modules ``path`` imports anywhere except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in type_only or not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module.split(".")[0] not in ("govlake", "sample"):
            continue
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            as_path = REPO_ROOT.joinpath(*full.split("."))
            out.add(full if as_path.with_suffix(".py").is_file() or (as_path / "__init__.py").is_file()
                    else node.module)
    return out


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for root in ("govlake", "sample") for p in (REPO_ROOT / root).rglob("*.py")}


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt in graph and nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_no_production_module_imports_the_generator():
    graph = _graph()
    assert len([m for m in graph if m.startswith("govlake.")]) > 40
    assert {m: sorted(d for d in deps if d.split(".")[0] == "sample")
            for m, deps in graph.items() if m.startswith("govlake") and any(d.startswith("sample") for d in deps)} == {}


def test_the_pipeline_module_stays_small():
    assert len((REPO_ROOT / "govlake" / "pipeline.py").read_text(encoding="utf-8").splitlines()) < 200
