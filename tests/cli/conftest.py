"""Fixtures of the CLI tests: ``keystile`` run in-process (click's CliRunner) on a real database.

Each test gets its own data directory; the walkthrough runs on SQLite and on PostgreSQL (a fresh schema in the
throwaway database of the run).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from .helpers import Shell, init


async def _fresh_schema(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture
def shell(tmp_path: Path) -> Shell:
    """``keystile`` on a SQLite file that does not exist yet."""
    data = tmp_path / "data"
    return Shell(data, f"sqlite:///{data / 'keystile.db'}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_shell(request: pytest.FixtureRequest, tmp_path: Path) -> Shell:
    """``keystile`` on an empty SQLite file and on an empty PostgreSQL schema."""
    data = tmp_path / "data"
    if request.param == "sqlite":
        return Shell(data, f"sqlite:///{data / 'keystile.db'}")
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(_fresh_schema(url))
    return Shell(data, url)


@pytest.fixture
def ready(shell: Shell) -> Shell:
    """A SQLite deployment after ``keystile init``."""
    init(shell)
    return shell
