"""Shared fixtures: a manual clock, storage over every backend, and the services wired on top.

PostgreSQL tests use a throwaway database created for this run and dropped at its end; each test gets a fresh
schema in it. When ``CI=true`` a PostgreSQL server that cannot be reached fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.service import Keystile
from keystile.service.authz import Actor, Principal
from keystile.storage import SqlStorage, open_storage
from tests.availability import missing as service_missing
from tests.tcp_proxy import TcpProxy, proxy_for

PG_ADMIN_DSN = os.environ.get("KEYSTILE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL database that lives as long as the test run."""
    name = f"keystile_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_missing(f"PostgreSQL at {PG_ADMIN_DSN} ({type(exc).__name__})")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def fresh_pg_schema(url: str) -> None:
    """Empty the throwaway database (every test starts from no schema at all)."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture
def fresh_pg_url(pg_url: str) -> str:
    """The throwaway PostgreSQL database, emptied for this test."""
    asyncio.run(fresh_pg_schema(pg_url))
    return pg_url


@pytest.fixture
def pg_proxy(fresh_pg_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy of this test's own in front of the throwaway PostgreSQL database, to cut or blackhole."""
    link = proxy_for(fresh_pg_url, 5432)
    yield link
    link.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend (the PostgreSQL one is emptied for each test)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keystile.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
async def storage(database_url: str, clock: ManualClock) -> AsyncIterator[SqlStorage]:
    """Migrated storage on each backend."""
    store = await open_storage(database_url, clock)
    await store.migrate()
    yield store
    await store.close()


MASTER_KEY = secrets.token_bytes(32)
"""The master key of the services the fixtures wire (recoverable keys, SPEC K3)."""


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, master_key=MASTER_KEY.hex())


@pytest.fixture
async def ks(storage: SqlStorage, settings: Settings, clock: ManualClock) -> Keystile:
    """The services over migrated storage, with a manual clock."""
    return Keystile.create(storage, settings, clock)


@pytest.fixture
async def root(ks: Keystile) -> tuple[Actor, str]:
    """An actor holding the first root key (permission ``*``), and that key in plain text."""
    created = await ks.root_keys.bootstrap()
    assert created is not None
    _, plain = created
    principal: Principal = await ks.root_keys.authenticate(plain)
    return Actor(principal, "127.0.0.1", "pytest"), plain
