"""Fixtures of the HTTP tests: the app in process (httpx over ASGITransport), root keys, APIs and keys.

Route tests run on the in-memory backend for speed; ``test_backends.py`` runs a walkthrough on every backend by
parametrizing ``database_url`` indirectly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from keystile.config import Settings
from keystile.core.commands import NewRootKey
from keystile.http.asgi import ASGIApp
from keystile.server import create_app
from keystile.service import Actor, Keystile

from .helpers import Headers, bearer

Grant = Callable[..., Awaitable[Headers]]


async def _empty_schema(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``memory://`` unless a test parametrizes the backend (``indirect=True``)."""
    backend = getattr(request, "param", "memory")
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'keystile.db'}"
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(_empty_schema(url))
    return url


@pytest.fixture
def app(ks: Keystile, settings: Settings) -> ASGIApp:
    return create_app(settings, keystile=ks)


@pytest.fixture
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def auth(root: tuple[Actor, str]) -> Headers:
    """Headers carrying the first root key (permission ``*``)."""
    return bearer(root[1])


@pytest.fixture
def grant(ks: Keystile, root: tuple[Actor, str]) -> Grant:
    """``await grant("keys.read", ...)``: headers with a new root key holding just those permissions."""

    async def make(*permissions: str) -> Headers:
        _, plain = await ks.root_keys.create(root[0], NewRootKey(permissions=list(permissions)))
        return bearer(plain)

    return make


@pytest.fixture
async def api(client: httpx.AsyncClient, auth: Headers) -> dict[str, Any]:
    response = await client.post("/v1/apis", json={"name": "demo"}, headers=auth)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def other_api(client: httpx.AsyncClient, auth: Headers) -> dict[str, Any]:
    response = await client.post("/v1/apis", json={"name": "elsewhere"}, headers=auth)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def key(client: httpx.AsyncClient, auth: Headers, api: dict[str, Any]) -> dict[str, Any]:
    """A key of ``api`` as created (``key`` holds the plain text)."""
    response = await client.post(f"/v1/apis/{api['id']}/keys", json={"name": "first"}, headers=auth)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body
