"""Readiness (SPEC O4): storage answers, and so does Redis when one is configured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keystile.service import Keystile


def redis_of(ks: Keystile) -> Any | None:
    """The Redis connection behind the services' rate limits, or ``None`` when they run without Redis."""
    return getattr(ks.ctx.verifier.spender, "redis", None)


async def check_ready(ks: Keystile) -> None:
    """Return when storage (and Redis, when configured) answers a ping.

    Raises :class:`~keystile.errors.StorageError` (``storage_unavailable``) when storage does not answer and
    ``RedisUnavailable`` (``redis_unavailable``, a StorageError too) when Redis does not: both are 503s. Redis gets
    the connection's deadline (``KEYSTILE_REDIS_TIMEOUT_MS``) to answer, however silent it is; while it is known to
    be down, the ping is a probe that can close the breaker (see ``RedisConnection.ping``).
    Keystile keeps verifying without Redis (SPEC L2 fails open or closed as configured), but a process that
    cannot reach it is not fully serving, and a load balancer should prefer one that can.
    """
    await ks.storage.ping()
    redis = redis_of(ks)
    if redis is not None:
        await redis.ping()
