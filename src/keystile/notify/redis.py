"""Cache invalidation across processes through Redis pub/sub (SPEC V6), on the channel ``<prefix>changes``.

The subscription has a connection of its own, without a read timeout (it waits for messages); a PING every few
quiet seconds, which must be answered, finds a connection that died without closing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from keystile.limits.connection import RedisConnection, RedisUnavailable
from keystile.notify._bus import NotifyingBus

QUIET_S = 5.0
"""After this long without a message the subscription is PINGed, and dropped if the answer takes as long."""


class RedisChangeBus(NotifyingBus):
    """Publishes changes on a Redis channel and applies those of other processes."""

    def __init__(self, redis: RedisConnection) -> None:
        super().__init__()
        self._redis = redis
        self.channel = redis.key("changes")
        self.client_name = f"keystile-bus-{self.origin}"

    async def _send(self, payload: str) -> None:
        await self._redis.publish(self.channel, payload.encode())

    async def _listen(self, subscribed: Callable[[], None]) -> None:
        client: aioredis.Redis = aioredis.Redis.from_url(
            self._redis.url,
            socket_connect_timeout=self._redis.timeout_s,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name=self.client_name,
        )
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            heard = time.monotonic()
            pinged = 0.0
            while True:
                message = await pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is None:
                    if pinged and now - pinged > QUIET_S:
                        raise RedisUnavailable("the change subscription stopped answering")
                    if not pinged and now - heard > QUIET_S:
                        await pubsub.ping()
                        pinged = now
                    continue
                heard, pinged = now, 0.0
                if message["type"] == "subscribe":
                    subscribed()  # again after redis-py reconnected by itself: messages may have been missed
                elif message["type"] == "message":
                    self.received_payload(message["data"])
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"change subscription lost: {type(exc).__name__}") from exc
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
            except (RedisError, OSError, TimeoutError):
                pass
