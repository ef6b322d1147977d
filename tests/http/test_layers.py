"""The HTTP edge sits below the server (issue 9, reshape 2): the integrations and the proxy import
:mod:`keystile.http`, never :mod:`keystile.server`, so protecting an app loads neither Starlette nor the routes;
and no package imports another's private module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "keystile"


@pytest.mark.parametrize(
    "module",
    ["keystile.integrations.asgi", "keystile.integrations.fastapi", "keystile.integrations.wsgi", "keystile.http"],
)
def test_importing_an_integration_loads_no_server_and_no_starlette(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('keystile.server', 'starlette')))\n"
        "print(','.join(loaded))\n"
    )
    if module.endswith("fastapi"):  # FastAPI is Starlette: only the server must stay out
        probe = probe.replace("('keystile.server', 'starlette')", "('keystile.server',)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"{module} loads {done.stdout.strip()}"


def test_no_package_imports_another_packages_private_module() -> None:
    private = re.compile(r"^\s*(?:from|import) keystile\.([a-z_]+)\.(_[a-z_]+)", re.MULTILINE)
    found = []
    for path in SRC.rglob("*.py"):
        package = path.relative_to(SRC).parts[0]
        for match in private.finditer(path.read_text()):
            if match[1] != package:
                found.append(f"{path.relative_to(SRC)} imports keystile.{match[1]}.{match[2]}")
    assert found == []
