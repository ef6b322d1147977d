"""What :meth:`keystile.service.Keystile.open` wires from the settings: spender and change bus (SPEC L2, L3, V6).

=============================  ========================================  ==================================
settings                       spender                                   change bus
=============================  ========================================  ==================================
``KEYSTILE_REDIS_URL`` set     :class:`~keystile.limits.redis.RedisSpender`  Redis pub/sub
PostgreSQL, no Redis           :class:`~keystile.limits.local.LocalSpender`  PostgreSQL LISTEN/NOTIFY
SQLite or memory, no Redis     :class:`~keystile.limits.local.LocalSpender`  this process only
=============================  ========================================  ==================================

Opening starts what runs in the background (the bus's subscription, the credits write-back); closing stops it,
after a last write-back. Neither fails when Redis is down: Keystile serves without it and recovers by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from keystile.config import Settings
from keystile.core.clock import Clock
from keystile.core.ports import ChangeBus, LocalChangeBus, Spender
from keystile.limits.local import LocalSpender
from keystile.storage import SqlStorage

log = logging.getLogger("keystile.limits")


@dataclass(slots=True)
class Backends:
    """The spender and change bus of one :class:`~keystile.service.Keystile`, and how to stop them."""

    bus: ChangeBus
    spender: Spender
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Stop every background task, in order (the last credits write-back before the connections go)."""
        for close in self.closers:
            try:
                await close()
            except Exception:  # closing must go on: the storage still has to be closed after this
                log.exception("closing a backend failed")
        self.closers = []


async def open_backends(settings: Settings, storage: SqlStorage, clock: Clock) -> Backends:
    """Build and start the spender and bus ``settings`` call for (see the module docstring)."""
    if settings.redis_url:
        from keystile.limits.redis import RedisSpender
        from keystile.notify.redis import RedisChangeBus
        from keystile.redis.connection import RedisConnection

        redis = RedisConnection(
            settings.redis_url, settings.redis_prefix, clock, timeout_s=settings.redis_timeout_ms / 1000
        )
        spender = RedisSpender(
            redis,
            storage,
            on_failure=settings.ratelimit_on_redis_failure,
            credits_in_redis=settings.credits_mode == "redis",
        )
        redis_bus = RedisChangeBus(redis)
        redis_bus.subscribe(spender.apply_changes)
        backends = Backends(redis_bus, spender, [spender.close, redis_bus.close, redis.close])
        try:
            await redis_bus.start()
            await spender.start()
        except BaseException:
            await backends.close()
            raise
        return backends
    if settings.credits_mode == "redis":
        log.warning("KEYSTILE_CREDITS_MODE=redis needs KEYSTILE_REDIS_URL; credits are counted in the database")
    if urlsplit(settings.database_url).scheme.lower() in ("postgresql", "postgres"):
        from keystile.notify.postgresql import PostgresChangeBus

        pg_bus = PostgresChangeBus(settings.database_url, storage.driver, clock=clock)
        await pg_bus.start()
        return Backends(pg_bus, LocalSpender(storage), [pg_bus.close])
    local = LocalChangeBus()
    return Backends(local, LocalSpender(storage), [local.close])
