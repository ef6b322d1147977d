"""The services speak the domain, not the wire (issue 9, reshape 5): no module of ``keystile.service`` imports
``keystile.schemas``. The edges (HTTP routes, CLI) decode wire structs into the commands of
``keystile.core.commands`` and show the records the services return in the wire shapes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "src" / "keystile" / "service"
WIRE = "keystile.schemas"


def wire_imports(path: Path) -> list[str]:
    """Every import of the wire schemas in ``path``, at any depth (imports inside functions count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        if any(name == WIRE or name.startswith(WIRE + ".") for name in names):
            found.append(f"{path.name}:{node.lineno}")
    return found


@pytest.mark.parametrize("path", sorted(SERVICE.glob("*.py")), ids=lambda path: path.name)
def test_a_service_module_does_not_import_the_wire_schemas(path: Path) -> None:
    assert wire_imports(path) == []


def test_the_check_sees_every_spelling_of_the_import(tmp_path: Path) -> None:
    spellings = [
        "import keystile.schemas",
        "from keystile.schemas import KeyOut",
        "from keystile.schemas.keys import key_out",
        "from keystile import schemas",
        "def f():\n    from keystile.schemas import Page",
    ]
    for source in spellings:
        module = tmp_path / "module.py"
        module.write_text(source + "\n")
        assert wire_imports(module) != [], source
