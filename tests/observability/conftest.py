"""Fixtures of the observability tests: the app in process (httpx over ASGITransport) with a root key, an API
and a key; ``/metrics`` read back with prometheus-client's own parser; a ``redis-server`` of a test's own.

When ``CI=true`` a missing ``redis-server`` or ``promtool`` fails instead of skipping.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.http.asgi import ASGIApp
from keystile.server import create_app
from keystile.service import Actor, Keystile
from keystile.storage import open_storage
from tests.availability import missing
from tests.redis.redis_server import RedisServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
START_TIMEOUT_S = 10.0


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and sorted labels, parsed by prometheus-client."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return samples(response.text)


def value(found: Samples, name: str, **labels: str) -> float:
    """The value of one sample (0 when the page does not have it: a counter not yet seen)."""
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def database_url() -> str:
    return "memory://"


@pytest.fixture
def app(ks: Keystile, settings: Settings) -> ASGIApp:
    return create_app(settings, keystile=ks)


@pytest.fixture
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def auth(root: tuple[Actor, str]) -> dict[str, str]:
    return bearer(root[1])


@pytest.fixture
async def api(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.post("/v1/apis", json={"name": "demo"}, headers=auth)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def key(client: httpx.AsyncClient, auth: dict[str, str], api: dict[str, Any]) -> dict[str, Any]:
    """A key of ``api`` with the permission ``docs.read`` (``key`` holds the plain text)."""
    response = await client.post(
        f"/v1/apis/{api['id']}/keys", json={"name": "first", "permissions": ["docs.read"]}, headers=auth
    )
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def promtool() -> str:
    """The path of Prometheus's ``promtool`` (Debian package ``prometheus``; ``make test`` installs it)."""
    found = shutil.which("promtool")
    if found is None:
        missing("promtool (apt-get install prometheus)")
    assert found is not None
    return found


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A running ``redis-server`` of this test's own, stopped at the end."""
    if shutil.which("redis-server") is None:
        missing("redis-server")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_ks(tmp_path: Path, own_redis: RedisServer, clock: ManualClock) -> AsyncIterator[Keystile]:
    """Services opened the way the server opens them, with rate limits and the change bus on Redis."""
    url = f"sqlite:///{tmp_path / 'keystile.db'}"
    storage = await open_storage(url, clock)
    await storage.migrate()
    await storage.close()
    ks = await Keystile.open(Settings(database_url=url, redis_url=own_redis.url), clock)
    yield ks
    await ks.close()
