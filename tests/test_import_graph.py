"""``pipeline/`` has no import cycle, and ``train`` never imports ``evaluation``.

The graph is read with ``ast`` (nothing is imported). An edge a -> b means module a imports
module b: ``from x import y`` points at ``x.y`` when that is a module, else at ``x``; and a
module importing ``p.q.r`` from outside package ``p.q`` also runs ``p/q/__init__.py``, so it
depends on ``p.q`` too. Imports are classified by where they stand: at module level
(``if TYPE_CHECKING:`` blocks included: a cycle through annotations is still a design
cycle), or inside a function (deferred to call time). Both graphs must be acyclic; the
function-level imports are reported on their own because Python tolerates their cycles at
import time, which is exactly why they hide.

Direction: ``evaluation`` depends on ``train`` (it scores trained models), never the
reverse; what both need (AUROC) lives in the shared :mod:`pipeline.metrics`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.snakemake_helpers import REPO

Graph = dict[str, set[str]]


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``root`` (a package directory)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every import node with whether it sits inside a function body."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _walk(child, inner)


def _targets(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """Modules of ``modules`` that one import statement loads directly."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:  # relative: resolved against the importing module's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        while name and name not in modules:  # ``import a.b.c`` of a name defined in a.b
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_graphs(root: Path) -> tuple[Graph, Graph]:
    """(module-level graph, function-level graph) of the package at ``root``."""
    files = module_names(root)
    modules = set(files)
    top: Graph = {m: set() for m in modules}
    deferred: Graph = {m: set() for m in modules}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node, in_function in _walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, module, is_package, modules):
                graph = deferred if in_function else top
                for dep in [target, *_packages_run(target, module, modules)]:
                    if dep != module:
                        graph[module].add(dep)
    return top, deferred


def _packages_run(target: str, importer: str, modules: set[str]) -> list[str]:
    """Packages whose ``__init__`` importing ``target`` runs (those not already running)."""
    parts = target.split(".")
    out = []
    for i in range(1, len(parts)):
        package = ".".join(parts[:i])
        inside = importer == package or importer.startswith(package + ".")
        if package in modules and not inside:
            out.append(package)
    return out


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle (a path back to its start) per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(c, graph) for c in components]


def _cycle_in(component: set[str], graph: Graph) -> list[str]:
    """A shortest cycle through the component's first member, by breadth-first search."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError("a strongly connected component always has a cycle")


def _merged(a: Graph, b: Graph) -> Graph:
    return {m: a.get(m, set()) | b.get(m, set()) for m in a.keys() | b.keys()}


def _reachable(graph: Graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


@pytest.fixture(scope="module")
def graphs() -> tuple[Graph, Graph]:
    return import_graphs(REPO / "pipeline")


def test_no_cycle_at_module_level(graphs) -> None:
    top, _ = graphs
    assert [" -> ".join(c) for c in find_cycles(top)] == []


def test_no_cycle_through_function_level_imports(graphs) -> None:
    top, deferred = graphs
    cycles = find_cycles(_merged(top, deferred))
    assert [" -> ".join(c) for c in cycles] == []


def _reaches(graphs: tuple[Graph, Graph], package: str, forbidden: str) -> dict[str, list]:
    """Modules of ``package`` that import (directly or not) a module of ``forbidden``."""
    everything = _merged(*graphs)
    inside = [m for m in everything if m == package or m.startswith(package + ".")]
    bad = {
        m: sorted(d for d in _reachable(everything, m) if d.startswith(forbidden)) for m in inside
    }
    return {m: deps for m, deps in bad.items() if deps}


def test_train_never_imports_evaluation(graphs) -> None:
    assert _reaches(graphs, "pipeline.train", "pipeline.eval") == {}


def test_inference_never_imports_training(graphs) -> None:
    # what a deployed model needs (the network, reloading it, preprocessing) is outside train/
    assert _reaches(graphs, "pipeline.infer", "pipeline.train") == {}


def test_the_walker_sees_real_edges(graphs) -> None:
    top, deferred = graphs
    assert "pipeline.train.engine" in top["pipeline.train.supervised"]
    assert "pipeline.train.data" in top["pipeline.train.supervised"]
    assert "pipeline.train" in top["pipeline.evaluation.probe"]  # runs train/__init__
    assert "pipeline.models.supervised" in deferred["pipeline.evaluation.probe"]
    assert "pipeline.synth.codes" in top["pipeline.synth.cohort"]  # from pkg import module


def test_a_cycle_is_found_and_named(tmp_path: Path) -> None:
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from toy.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import toy.a\n"
    )
    top, deferred = import_graphs(pkg)
    assert find_cycles(top) == []
    assert find_cycles(_merged(top, deferred)) == [["toy.a", "toy.sub.b", "toy.c", "toy.a"]]
