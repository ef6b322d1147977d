"""Keystile's Redis client, below the packages that use it: :mod:`keystile.limits` (rate limits and credits,
SPEC L2, L3) and :mod:`keystile.notify` (publishing changes, SPEC V6).

- :mod:`keystile.redis.connection`: :class:`~keystile.redis.connection.RedisConnection`, one per process, that
  shares round trips between concurrent calls and batches script calls; :class:`RedisUnavailable`.
- :mod:`keystile.redis.recovery`: its circuit breaker, and the probes that find Redis back after a failure.
- :mod:`keystile.redis.wire`: RESP packing and the asyncio protocol under the connection (parsed by hiredis).
- :mod:`keystile.redis.scripts`: the Lua scripts shipped in ``keystile/redis/lua/``, called by their SHA-1.

Importing this package imports no driver; its modules import hiredis and redis-py (for URL parsing) themselves.
"""
