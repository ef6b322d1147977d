"""Fixtures of the change-bus tests: the shared Redis under a key prefix of each test's own (deleted after).

When ``CI=true`` a Redis that cannot be reached fails instead of skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis

from tests.availability import missing as service_missing

REDIS_URL = os.environ.get("KEYSTILE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=value + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
