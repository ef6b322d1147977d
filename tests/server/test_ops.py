"""``/healthz`` and ``/readyz``, and the app's lifespan when it opens storage itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.http.asgi import ASGIApp
from keystile.server import create_app
from keystile.service import Keystile
from keystile.storage import open_storage

from .helpers import bearer, problem


async def test_healthz_needs_no_root_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_answers_when_storage_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_readyz_is_a_503_problem_when_storage_is_down(client: httpx.AsyncClient, ks: Keystile) -> None:
    await ks.storage.close()

    problem(await client.get("/readyz"), 503, "storage_unavailable")
    assert (await client.get("/healthz")).status_code == 200


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[list[str]]:
    """Drive the ASGI lifespan protocol around the block; yields the lifespan messages the app sent."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []
    changed = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: Any) -> None:
        sent.append(message["type"])
        changed.set()

    async def lifespan() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    task = asyncio.create_task(lifespan())
    await inbox.put({"type": "lifespan.startup"})
    while not sent:
        await changed.wait()
        changed.clear()
    try:
        yield sent
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await task


async def test_the_app_opens_storage_at_startup_and_closes_it_at_shutdown(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'keystile.db'}")
    storage = await open_storage(settings.database_url, SystemClock())
    await storage.migrate()
    created = await Keystile.create(storage, settings).root_keys.bootstrap()
    await storage.close()
    assert created is not None
    app = create_app(settings)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        problem(await client.get("/readyz"), 503, "not_ready")
        async with running(app) as sent:
            assert sent == ["lifespan.startup.complete"]
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/v1/apis", headers=bearer(created[1]))).status_code == 200
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        problem(await client.get("/readyz"), 503, "not_ready")
        problem(await client.post("/v1/keys/verify", json={"key": "k"}, headers=bearer(created[1])), 503, "not_ready")
