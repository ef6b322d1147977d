"""What users read never cites the product specification's section ids ("SPEC L2", "(O1)"): they have no such
document. The README, CHANGELOG, docs/*.md, the OpenAPI document and every command's --help are checked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from keystile.cli import cli
from keystile.server.openapi import Reference
from keystile.server.routes import OPERATIONS

ROOT = Path(__file__).resolve().parent.parent
# "SPEC V6", or ids alone in parentheses: "(O1)", "(K1, K4)".
CITATION = re.compile(r"SPEC [A-Z][0-9]|\((?:[A-Z][0-9], )*[A-Z][0-9]\)")
PAGES = ["README.md", "CHANGELOG.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def _citations(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if CITATION.search(line)]


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_cite_no_spec_ids(page: str) -> None:
    assert _citations((ROOT / page).read_text(encoding="utf-8")) == []


def test_the_openapi_document_cites_no_spec_ids() -> None:
    assert _citations(Reference(OPERATIONS).json().decode().replace("\\n", "\n")) == []


def test_no_help_text_cites_spec_ids() -> None:
    runner = CliRunner()
    found = {}
    for path in _commands(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        if lines := _citations(result.output):
            found[" ".join(path)] = lines
    assert len(list(_commands(cli))) > 20  # every command was walked
    assert found == {}
