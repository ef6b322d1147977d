"""Redis sits below the packages that use it (issue 9, reshape 4): :mod:`keystile.limits` and
:mod:`keystile.notify` both reach Redis through :mod:`keystile.redis` and never import each other, and
:mod:`keystile.redis` imports none of Keystile but the core and the error tree. Read from the source with ``ast``,
so that an import inside a function or under ``TYPE_CHECKING`` counts too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "keystile"


def imports_of(source: str, module: str) -> set[str]:
    """The ``keystile.*`` modules that the code ``source`` of ``module`` (``keystile.notify.redis``; a package as
    ``keystile.notify.__init__``) imports, relative imports resolved, wherever the import statement is."""
    package = module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from keystile.limits import redis`
    return {name for name in found if name == "keystile" or name.startswith("keystile.")}


def package_edges() -> set[tuple[str, str]]:
    """Which top-level package of keystile imports which: ``("limits", "redis")`` and so on."""
    edges: set[tuple[str, str]] = set()
    for path in SRC.rglob("*.py"):
        module = ".".join(("keystile", *path.relative_to(SRC).with_suffix("").parts))
        source = module.split(".")[1]
        for name in imports_of(path.read_text(), module):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] != source:
                edges.add((source, parts[1]))
    return edges


def test_limits_and_notify_do_not_import_each_other() -> None:
    edges = package_edges()
    assert ("limits", "notify") not in edges
    assert ("notify", "limits") not in edges


def test_limits_and_notify_reach_redis_through_keystile_redis() -> None:
    edges = package_edges()
    assert ("limits", "redis") in edges
    assert ("notify", "redis") in edges


def test_keystile_redis_imports_only_the_core_and_the_errors() -> None:
    assert {target for source, target in package_edges() if source == "redis"} <= {"core", "errors"}


def test_every_kind_of_import_statement_counts() -> None:
    # The graph above is only as good as this reading of it.
    source = """
from typing import TYPE_CHECKING
import keystile.core.clock
from keystile.redis import connection
from . import _bus
from ..limits.local import LocalSpender
if TYPE_CHECKING:
    from keystile.service import Keystile
def later():
    from keystile.limits.redis import RedisSpender
"""
    assert imports_of(source, "keystile.notify.redis") >= {
        "keystile.core.clock",
        "keystile.redis.connection",
        "keystile.notify._bus",
        "keystile.limits.local",
        "keystile.service",
        "keystile.limits.redis",
    }
