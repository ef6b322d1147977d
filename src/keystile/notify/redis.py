"""Cache invalidation across processes through Redis pub/sub (SPEC V6), on the channel ``<prefix>changes``.

The subscription has a connection of its own (redis-py's), which waits for messages without a read timeout; every
other wait has the connection's deadline (``KEYSTILE_REDIS_TIMEOUT_MS``): connecting, the confirmation of the
subscription, and the answer to the PING sent after each quiet second, so that a Redis that goes silent with the
connection open is noticed within about a second. Publishing goes through the process's
:class:`~keystile.redis.connection.RedisConnection`, which fails at once while Redis is known to be down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from keystile.config import mask_url
from keystile.notify._bus import NotifyingBus
from keystile.redis.connection import RedisConnection, RedisUnavailable

QUIET_S = 1.0
"""After this long without a message the subscription is PINGed, and dropped unless the answer comes within the
deadline."""


class RedisChangeBus(NotifyingBus):
    """Publishes changes on a Redis channel and applies those of other processes."""

    def __init__(self, redis: RedisConnection) -> None:
        super().__init__(f"Redis at {mask_url(redis.url)}", redis.clock)
        self._redis = redis
        self.channel = redis.key("changes")
        self.client_name = f"keystile-bus-{self.origin}"

    async def _send(self, payload: str) -> None:
        await self._redis.publish(self.channel, payload.encode())

    async def _listen(self, subscribed: Callable[[], None]) -> None:
        deadline = self._redis.timeout_s
        client: aioredis.Redis = aioredis.Redis.from_url(
            self._redis.url,
            socket_connect_timeout=deadline,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name=self.client_name,
        )
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(deadline):
                await pubsub.subscribe(self.channel)
            heard = time.monotonic()
            due = heard + deadline  # when an answer (here, the subscription's confirmation) is overdue; 0: none due
            while True:
                message = await pubsub.get_message(timeout=min(deadline, QUIET_S))
                now = time.monotonic()
                if message is None:
                    if due and now > due:
                        raise RedisUnavailable(f"the change subscription did not answer within {deadline:g} s")
                    if not due and now - heard > QUIET_S:
                        async with asyncio.timeout(deadline):
                            await pubsub.ping()
                        due = now + deadline
                    continue
                heard, due = now, 0.0
                if message["type"] == "subscribe":
                    subscribed()  # again after redis-py reconnected by itself: messages may have been missed
                elif message["type"] == "message":
                    self.received_payload(message["data"])
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        finally:
            try:
                async with asyncio.timeout(deadline):
                    close_pubsub: Callable[[], Awaitable[None]] = pubsub.aclose  # typed in redis-py 8, untyped in 5
                    await close_pubsub()
                    await client.aclose()
            except (RedisError, OSError, TimeoutError):
                pass
