"""``/readyz``: 200 while storage answers, and Redis when one is configured; a 503 problem naming the one that
does not; ``/healthz`` answers either way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from keystile.config import Settings
from keystile.server import create_app
from keystile.service import Keystile
from tests.redis.redis_server import RedisServer


@pytest.fixture
async def redis_client(redis_ks: Keystile) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url="memory://"), keystile=redis_ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def assert_problem(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]


async def test_ready_when_storage_answers_without_redis(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_not_ready_when_storage_is_down(client: httpx.AsyncClient, ks: Keystile) -> None:
    await ks.storage.close()

    assert_problem(await client.get("/readyz"), "storage_unavailable")
    assert (await client.get("/healthz")).status_code == 200


async def test_ready_when_storage_and_redis_answer(redis_client: httpx.AsyncClient) -> None:
    response = await redis_client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_not_ready_while_redis_is_down_and_ready_again_when_it_is_back(
    redis_client: httpx.AsyncClient, own_redis: RedisServer
) -> None:
    own_redis.stop()

    assert_problem(await redis_client.get("/readyz"), "redis_unavailable")
    assert (await redis_client.get("/healthz")).status_code == 200

    own_redis.start()
    assert (await redis_client.get("/readyz")).status_code == 200


async def test_not_ready_when_storage_is_down_though_redis_answers(
    redis_client: httpx.AsyncClient, redis_ks: Keystile
) -> None:
    await redis_ks.storage.close()

    assert_problem(await redis_client.get("/readyz"), "storage_unavailable")
