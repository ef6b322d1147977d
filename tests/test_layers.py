"""The packages of keystile depend only downwards (issue 9: "the tree shows the layers"; docs/architecture.md draws
this table). Every import counts, deferred or for type checking alike: a layer that may not import another may
not even name it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "keystile"

# What each top-level package (or module) may import of keystile, besides itself. Lower layers first.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "core": {"errors"},
    "config": {"core", "errors"},
    "schemas": {"core", "errors"},
    "operations": {"core", "schemas"},
    "storage": {"core", "errors"},
    "redis": {"core", "errors"},
    "events": {"core", "errors"},
    "leaks": {"core", "errors"},
    "limits": {"core", "errors", "redis"},
    "notify": {"config", "core", "errors", "redis", "storage"},
    "service": {"config", "core", "errors", "events", "limits", "notify", "redis", "storage"},
    "http": {"config", "core", "errors", "schemas"},
    "observability": {"events", "service"},
    "client": {"_version", "errors", "operations", "schemas"},
    "proxy": {"config", "core", "errors", "http", "service"},
    "integrations": {"client", "config", "core", "errors", "http", "schemas", "service"},
    "unkey": {"config", "core", "errors", "http", "observability", "schemas", "service"},
    "web": {"config", "core", "errors", "http", "service"},
    "portal": {"config", "core", "errors", "service", "web"},
    "server": {
        "config",
        "core",
        "errors",
        "http",
        "leaks",
        "observability",
        "operations",
        "schemas",
        "service",
        "unkey",
        "web",
    },
    "cli": {
        "config",
        "core",
        "errors",
        "events",
        "http",
        "leaks",
        "observability",
        "proxy",
        "schemas",
        "service",
        "storage",
    },
    "__init__": {"_version", "client", "config", "errors"},
    "__main__": {"cli"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name.split(".")[1] for name in names if name.startswith("keystile.")}
    return found


def test_every_package_imports_only_the_layers_below_it() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        package = path.relative_to(SRC).parts[0].removesuffix(".py")
        assert package in ALLOWED, f"{package} is a new package: give it a place in ALLOWED and the architecture"
        for imported in sorted(_imports(path) - {package} - ALLOWED[package]):
            wrong.append(f"{path.relative_to(SRC)} imports keystile.{imported}")
    assert wrong == []


def test_the_layers_have_no_cycle() -> None:
    # The table itself must be a hierarchy: no package may reach itself through the ones it is allowed.
    def reach(package: str, seen: frozenset[str]) -> None:
        for below in ALLOWED[package]:
            assert below not in seen, f"a cycle through {below}"
            reach(below, seen | {below})

    for package in ALLOWED:
        reach(package, frozenset({package}))
