"""No module of keystile imports itself through others (issue 9, step 6).

The graph is read from the source with :mod:`ast`, not from ``sys.modules``: an edge is an ``import keystile.x``
or a ``from keystile.x import y`` (``y`` when it is a module, else ``x``), relative forms resolved against the
importing module's package. Imports under ``if TYPE_CHECKING:`` never run, so they are no edges.

Two graphs are checked, and neither may have a cycle: the imports at module level (those that run when the
module is first imported), and the same with the imports deferred into functions added. Deferring an import
to load a dependency only when needed is fine, but not to dodge a cycle: that leaves two modules that still need
each other (``cli/keys`` and ``cli/keyops``, ``server/routes/ops`` and ``server/openapi`` did).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from itertools import pairwise
from pathlib import Path

import keystile

SRC = Path(keystile.__file__).parent

Graph = Mapping[str, Mapping[str, int]]
"""Module -> the modules it imports, each with the line of its first import there."""


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under the package directory ``root``, by dotted name: its file and whether it is a package."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The import statements that run: at module level (class bodies included), and in functions if
    ``deferred``; never those under ``if TYPE_CHECKING:``."""

    def __init__(self, *, deferred: bool) -> None:
        self.deferred = deferred
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        for statement in [] if _type_checking(node.test) else node.body:
            self.visit(statement)
        for statement in node.orelse:
            self.visit(statement)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if self.deferred:
            self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append(node)


def import_graph(root: Path, *, deferred: bool = False) -> dict[str, dict[str, int]]:
    """The graph of the imports between the modules under ``root`` (see the module docstring)."""
    known = modules(root)
    graph: dict[str, dict[str, int]] = {}
    for name, (path, package) in known.items():
        visitor = _Imports(deferred=deferred)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        here = name if package else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in visitor.found:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = here.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            for target in targets:
                if target in known and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def _components(graph: Graph) -> Iterator[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while not component or component[-1] != node:
                    component.append(stack.pop())
                    on_stack.discard(component[-1])
                if len(component) > 1:
                    yield sorted(component)


def cycles(graph: Graph) -> list[str]:
    """One cycle of each strongly connected component, as ``a:12 -> b:3 -> a`` (each import's line)."""
    found = []
    for component in _components(graph):
        members = set(component)
        first = component[0]
        # The shortest way back to the first module, breadth first.
        came_from: dict[str, str] = {}
        frontier = [first]
        while first not in came_from:
            reached = []
            for node in frontier:
                for target in sorted(graph[node]):
                    if target in members and target not in came_from:
                        came_from[target] = node
                        reached.append(target)
            frontier = reached
        path = [first]
        while len(path) == 1 or path[-1] != first:
            path.append(came_from[path[-1]])
        path.reverse()
        found.append(" -> ".join(f"{a}:{graph[a][b]}" for a, b in pairwise(path)) + f" -> {first}")
    return sorted(found)


def test_no_module_imports_itself_through_others() -> None:
    found = cycles(import_graph(SRC))
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_cycle_hides_behind_an_import_deferred_into_a_function() -> None:
    found = cycles(import_graph(SRC, deferred=True))
    assert not found, "import cycles through imports inside functions:\n" + "\n".join(found)


def _package(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_graph_resolves_every_form_of_import_and_skips_those_that_never_run_at_import(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "from . import b\nfrom .sub import c as see\nimport pkg.sub.d\n",
            "pkg/b.py": "from pkg.sub.c import NAME\n",
            "pkg/sub/__init__.py": "from .. import b\n",
            "pkg/sub/c.py": "NAME = 1\nclass K:\n    from pkg.sub import d\n",
            "pkg/sub/d.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nelse:\n    import os\n"
                "def f():\n    from pkg import b\n"
            ),
        },
    )
    assert import_graph(root) == {
        "pkg": {"pkg.a": 1},
        "pkg.a": {"pkg.b": 1, "pkg.sub.c": 2, "pkg.sub.d": 3},
        "pkg.b": {"pkg.sub.c": 1},
        "pkg.sub": {"pkg.b": 1},
        "pkg.sub.c": {"pkg.sub.d": 3},
        "pkg.sub.d": {},
    }
    assert import_graph(root, deferred=True)["pkg.sub.d"] == {"pkg.b": 7}


def test_a_cycle_is_listed_with_the_lines_that_close_it(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import os\nfrom pkg import b\n",
            "pkg/b.py": "from pkg.c import X\n",
            "pkg/c.py": "X = 1\ndef f():\n    from . import a\n",
            "pkg/d.py": "from pkg import e\n",
            "pkg/e.py": "import pkg.d\n",
        },
    )
    assert cycles(import_graph(root)) == ["pkg.d:1 -> pkg.e:1 -> pkg.d"]
    assert cycles(import_graph(root, deferred=True)) == [
        "pkg.a:2 -> pkg.b:1 -> pkg.c:3 -> pkg.a",
        "pkg.d:1 -> pkg.e:1 -> pkg.d",
    ]
