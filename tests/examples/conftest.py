"""A Keystile deployment (a real ``keystile serve`` on SQLite or PostgreSQL) with keys for the examples, and the
examples themselves as real processes (granian), verifying through that server or straight against its database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keystile import Client
from keystile.schemas import ApiCreate, KeyCreate, KeyCreated
from tests.conftest import fresh_pg_schema
from tests.e2e.server import BIN, REPO, Server, free_port, serve

CACHE_MS = "300"
EXAMPLES = {"fastapi": "asgi", "starlette": "asgi", "flask": "wsgi"}


@dataclass(frozen=True)
class Deployment:
    server: Server
    database_url: str
    root_key: str
    api_id: str
    reader: KeyCreated
    """``notes.read`` and ``notes.write``, owner ``alice``."""
    nothing: KeyCreated
    """No permissions."""
    revoked: KeyCreated
    """``notes.read``, revoked before any use."""

    def client(self) -> Client:
        return Client(self.server.url, self.root_key)

    def new_reader(self) -> KeyCreated:
        with self.client() as keystile:
            return keystile.create_key(self.api_id, KeyCreate(owner_id="bob", permissions=["notes.read"]))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp(f"deployment-{request.param}")
    if request.param == "sqlite":
        database_url = f"sqlite:///{workdir / 'keystile.db'}"
    else:
        database_url = request.getfixturevalue("pg_url")
        asyncio.run(fresh_pg_schema(database_url))
    server = serve(workdir, {"KEYSTILE_DATABASE_URL": database_url, "KEYSTILE_CACHE_TTL_MS": CACHE_MS})
    try:
        root_key = server.root_key()
        with Client(server.url, root_key) as keystile:
            api = keystile.create_api(ApiCreate(name="notes"))
            reader = keystile.create_key(api.id, KeyCreate(owner_id="alice", permissions=["notes.read", "notes.write"]))
            nothing = keystile.create_key(api.id, KeyCreate(owner_id="carol"))
            revoked = keystile.create_key(api.id, KeyCreate(owner_id="dave", permissions=["notes.read"]))
            keystile.revoke_key(revoked.id)
        yield Deployment(server, database_url, root_key, api.id, reader, nothing, revoked)
    finally:
        server.stop()


@dataclass(frozen=True)
class Example:
    name: str
    mode: str
    deployment: Deployment
    process: Server

    @property
    def url(self) -> str:
        return self.process.url


def start_example(name: str, mode: str, deployment: Deployment, workdir: Path) -> Server:
    """``granian`` serving ``examples/<name>_app.py``, verifying remotely or locally."""
    if mode == "remote":
        env = {"KEYSTILE_URL": deployment.server.url, "KEYSTILE_ROOT_KEY": deployment.root_key}
    else:
        env = {"KEYSTILE_DATABASE_URL": deployment.database_url}
    env |= {"KEYSTILE_REMOTE_CACHE_MS": CACHE_MS, "KEYSTILE_CACHE_TTL_MS": CACHE_MS}
    port = free_port()
    command = [
        str(BIN / "granian"),
        "--interface",
        EXAMPLES[name],
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--working-dir",
        str(REPO),
        f"examples.{name}_app:create_app",
    ]
    return Server(command, workdir, env, port, name=f"{name}-{mode}")


@pytest.fixture(
    scope="module",
    params=[(name, mode) for name in EXAMPLES for mode in ("remote", "local")],
    ids=lambda param: f"{param[0]}-{param[1]}",
)
def example(
    request: pytest.FixtureRequest, deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Example]:
    name, mode = request.param
    process = start_example(name, mode, deployment, tmp_path_factory.mktemp(f"{name}-{mode}"))
    try:
        yield Example(name, mode, deployment, process)
    finally:
        process.stop()
