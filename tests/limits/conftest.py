"""Fixtures of the Redis limits tests (see :mod:`tests.redis.fixtures`)."""

from tests.redis.fixtures import client, conn, own_redis, prefix, redis_url  # noqa: F401 (fixtures)
