"""Versioned schema migrations: ``NNNN_name.sql`` files per dialect, shipped as package data.

Applied versions are recorded with a checksum of their text in ``keystile_migrations``. The pending migrations of
a run are applied in one transaction with their records, under the schema lock: a failed migration leaves no trace
(nor do the others of its run), and processes starting together do not take turns (the first applies them all, the
others then find nothing pending). A database whose schema
is newer than this code, or whose applied migration text differs from ours, is refused rather than guessed at.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from keystile.errors import MigrationError
from keystile.storage._audit import chain_existing
from keystile.storage._driver import Driver, Executor

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_STEPS: dict[int, Callable[[Executor], Awaitable[None]]] = {5: chain_existing}
"""Work a migration needs beyond its SQL, run right after its script in the same transaction: what SQL alone
cannot compute (the hashes that chain the audit entries written before migration 5)."""
_TABLE = """CREATE TABLE IF NOT EXISTS keystile_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    script: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.script.encode()).hexdigest()


def available(dialect: str) -> list[Migration]:
    """The migrations shipped for a dialect, in version order."""
    folder = resources.files("keystile.storage").joinpath("migrations", dialect)
    found = []
    for item in folder.iterdir():
        match = _NAME.fullmatch(item.name)
        if match:
            found.append(Migration(int(match[1]), match[2], item.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def _applied(driver: Driver) -> dict[int, str]:
    rows = await driver.fetchall("SELECT version, checksum FROM keystile_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def pending(driver: Driver) -> list[Migration]:
    """Migrations not yet applied; raises :class:`MigrationError` for a schema this code cannot use."""
    async with driver.transaction() as tx:
        await driver.lock_schema(tx)
        await tx.execute(_TABLE)
    applied = await _applied(driver)
    shipped = available(driver.dialect)
    known = {m.version: m for m in shipped}
    newer = sorted(v for v in applied if v not in known)
    if newer:
        raise MigrationError(
            f"the database has schema version {newer[-1]}, newer than this Keystile knows; upgrade Keystile"
        )
    for version, checksum in applied.items():
        if known[version].checksum != checksum:
            raise MigrationError(f"migration {version} in the database differs from the one shipped")
    return [m for m in shipped if m.version not in applied]


async def migrate(driver: Driver, now_ms: int, *, up_to: int | None = None) -> list[int]:
    """Apply every pending migration (up to version ``up_to``: a database as an older Keystile left it, for tests
    of an upgrade); returns the versions applied."""
    done: list[int] = []
    migrations = [m for m in await pending(driver) if up_to is None or m.version <= up_to]
    if not migrations:
        return done
    async with driver.transaction() as tx:
        await driver.lock_schema(tx)
        for migration in migrations:
            row = await tx.fetchone("SELECT 1 FROM keystile_migrations WHERE version = $1", migration.version)
            if row is not None:
                continue  # another process applied it while we waited for the lock
            await driver.run_script(tx, migration.script)
            step = _STEPS.get(migration.version)
            if step is not None:
                await step(tx)
            await tx.execute(
                "INSERT INTO keystile_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
                migration.version,
                migration.name,
                migration.checksum,
                now_ms,
            )
            done.append(migration.version)
    return done
