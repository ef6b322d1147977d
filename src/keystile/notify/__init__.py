"""Change buses (SPEC V6): how a change made by one process reaches every process's verification cache.

- :class:`keystile.notify.redis.RedisChangeBus`: Redis pub/sub, when ``KEYSTILE_REDIS_URL`` is set;
- :class:`keystile.notify.postgresql.PostgresChangeBus`: PostgreSQL LISTEN/NOTIFY, on PostgreSQL without Redis;
- :class:`keystile.core.ports.LocalChangeBus`: this process only (SQLite or ``memory://`` without Redis).

With a notifying bus a revoked, disabled or deleted key stops verifying everywhere within a second, so caches
keep entries longer (60 s by default instead of 5 s). Each bus imports its driver itself; the Redis bus publishes
through :mod:`keystile.redis`. Which bus a process gets is decided in :mod:`keystile.service.backends`.
"""
