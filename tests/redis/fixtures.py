"""Fixtures of the tests that use Redis (imported by the conftests of tests/redis, tests/limits, tests/service):
the shared Redis under a key prefix of each test's own (deleted after), and Redis servers a test starts itself, on
a port of its own, to stop and start again.

When ``CI=true`` a Redis that cannot be reached, or a missing ``redis-server``, fails instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from keystile.core.clock import ManualClock
from keystile.redis.connection import RedisConnection
from tests.availability import missing as service_missing

from .redis_server import RedisServer

REDIS_URL = os.environ.get("KEYSTILE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis (``KEYSTILE_TEST_REDIS_URL``)."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        service_missing(f"Redis at {REDIS_URL} ({type(exc).__name__})")
    return REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted after the test."""
    value = f"test:{secrets.token_hex(6)}:"
    yield value
    delete_prefix(redis_url, value)


@pytest.fixture
async def conn(redis_url: str, prefix: str, clock: ManualClock) -> AsyncIterator[RedisConnection]:
    """A connection to the shared Redis under this test's prefix (the breaker runs on the manual clock)."""
    connection = RedisConnection(redis_url, prefix, clock)
    yield connection
    await connection.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A redis-py client of the shared Redis, to look at and change what the scripts wrote."""
    plain = aioredis.Redis.from_url(redis_url)
    yield plain
    await plain.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A running Redis server of this test's own, stopped at the end."""
    if shutil.which("redis-server") is None:
        service_missing("redis-server")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
