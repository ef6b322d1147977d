"""Fixtures of the change-bus tests: the shared Redis under a key prefix of each test's own (deleted after), as
the Redis tests have them.

When ``CI=true`` a Redis that cannot be reached fails instead of skipping.
"""

from __future__ import annotations

from tests.redis.fixtures import prefix, redis_url

__all__ = ["prefix", "redis_url"]
