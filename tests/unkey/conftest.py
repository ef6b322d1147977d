"""A real ``keystile serve`` on SQLite and on PostgreSQL, and Unkey's own Python SDK (``unkey-py``) pointed at it;
the in-process tests use the HTTP tests' own fixtures (the app over httpx's ASGI transport, the root key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from unkey.py import Unkey

from tests.e2e.server import Server, serve
from tests.server.conftest import app, auth, client, database_url  # noqa: F401 - the HTTP tests' fixtures, shared


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A server on each database, started the way the README says."""
    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgresql":
        env["KEYSTILE_DATABASE_URL"] = request.getfixturevalue("fresh_pg_url")
    running = serve(tmp_path, env)
    yield running
    running.stop()


def sdk(server: Server, root_key: str) -> Unkey:
    """Unkey's SDK as a team that moves to Keystile configures it: only the server URL changes. No retries, so
    that an error answer is seen at once."""
    from unkey.py import utils

    never = utils.RetryConfig("none", utils.BackoffStrategy(1, 1, 1, 1), False)
    return Unkey(root_key=root_key, server_url=server.url, retry_config=never)


@pytest.fixture
def unkey(server: Server) -> Iterator[Unkey]:
    """The SDK with the server's first root key (permission ``*``)."""
    with sdk(server, server.root_key()) as unkey_sdk:
        yield unkey_sdk
