"""Where rate-limit buckets and credit counters live (SPEC L2, L3).

- :class:`~keystile.limits.local.LocalSpender` (the default): rate limits in this process's memory (exact per
  process), credits in the database (exact and durable).
- ``keystile.limits.redis`` (with ``KEYSTILE_REDIS_URL``): rate limits in Redis, exact across every instance,
  and optionally credits in Redis (``KEYSTILE_CREDITS_MODE=redis``).

Redis is reached through :mod:`keystile.redis` (connection, scripts), which :mod:`keystile.notify` shares; which
spender a process gets is decided in one place, :mod:`keystile.service.backends`.
"""
