"""One Redis connection per process (SPEC L2): keys under a prefix, Lua scripts by EVALSHA, round trips shared.

One Redis call from asyncio costs more than a whole cached verification, so concurrent calls share round trips:
a call made while another round trip is in flight waits for it to end and then goes out with every other call
queued meanwhile, in one pipeline. A script the server does not know (a restarted or flushed Redis) is loaded
and the calls that needed it are sent again.

redis-py is imported here and in :mod:`keystile.notify.redis` only. Its exceptions never leave this module:
they become :class:`RedisUnavailable`, and each one opens a circuit breaker for a short, growing backoff during
which calls fail at once without touching the network, so that a dead Redis costs the caller nothing; the first
call after the backoff tries again, and a success closes the breaker (recovery needs no restart).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from keystile.core.clock import Clock
from keystile.errors import StorageError

# A Redis that does not answer within this long counts as down (a verification waits at most this long once,
# then the breaker answers for it).
TIMEOUT_S = 1.0
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0

Arg = str | int | float | bytes


class RedisUnavailable(StorageError):
    """Redis could not be reached, timed out, or failed a command; the driver's exception is the ``__cause__``."""

    code = "redis_unavailable"
    title = "Redis unavailable"


class Script:
    """A Lua script shipped in ``keystile/limits/lua/``, called by its SHA-1."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files("keystile.limits.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        self.sha_bytes = self.sha.encode()


class Breaker:
    """Says whether Redis may be tried now: closed until a failure, then open for a backoff that doubles with
    each failure in a row (up to :data:`MAX_BACKOFF_S`)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._backoff = FIRST_BACKOFF_S
        self.retry_at = 0.0
        self.down = False

    def allows(self) -> bool:
        return not self.down or self._clock.monotonic() >= self.retry_at

    def failed(self) -> None:
        if self.down:
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        self.down = True
        self.retry_at = self._clock.monotonic() + self._backoff

    def succeeded(self) -> None:
        self.down = False
        self._backoff = FIRST_BACKOFF_S

    def wait_ms(self) -> float:
        """How long until Redis is tried again (0 when it may be tried now)."""
        return max(0.0, (self.retry_at - self._clock.monotonic()) * 1000) if self.down else 0.0


_Call = tuple[Script, Sequence[str], Sequence[Arg], "asyncio.Future[Any]"]


class RedisConnection:
    """A client for ``url`` (``redis://`` or ``rediss://``) whose keys all start with ``prefix``.

    Counters (since start): ``round_trips``, ``calls`` (script calls; more than round trips when batched),
    ``errors`` (failed round trips and failed script calls).
    """

    def __init__(self, url: str, prefix: str, clock: Clock) -> None:
        self.prefix = prefix
        self.url = url
        self.clock = clock
        self.breaker = Breaker(clock)
        # No retries inside redis-py: a failure must reach the breaker at once, not after redis-py's backoff.
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self._queue: list[_Call] = []
        self._drainer: asyncio.Task[None] | None = None
        self.round_trips = self.calls = self.errors = 0

    def key(self, name: str) -> str:
        return self.prefix + name

    @property
    def stats(self) -> dict[str, int]:
        return {"round_trips": self.round_trips, "calls": self.calls, "errors": self.errors}

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script, in one pipeline with every other call waiting meanwhile; returns its reply.

        Raises :class:`RedisUnavailable` when Redis fails, or at once while the breaker is open.
        """
        if not self.breaker.allows():
            raise RedisUnavailable("Redis is unavailable; it will be tried again shortly")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((script, keys, args, future))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._drainer = None

    async def _send(self, batch: list[_Call]) -> None:
        self.round_trips += 1
        self.calls += len(batch)
        try:
            replies = await self._pipeline(batch)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                for script in {batch[i][0].name: batch[i][0] for i in missing}.values():
                    await self.client.script_load(script.source)
                self.round_trips += 1
                for i, reply in zip(missing, await self._pipeline([batch[i] for i in missing]), strict=True):
                    replies[i] = reply
        except (RedisError, OSError, TimeoutError) as exc:
            self.errors += 1
            self.breaker.failed()
            for *_, future in batch:
                if not future.done():
                    future.set_exception(_translate(exc))
            return
        self.breaker.succeeded()
        for (script, *_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # its caller was cancelled
            if isinstance(reply, Exception):
                self.errors += 1
                failure = RedisUnavailable(f"Redis script {script.name} failed: {reply}")
                failure.__cause__ = reply
                future.set_exception(failure)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: Sequence[_Call]) -> list[Any]:
        """Send a batch in one write and read its replies (an error reply in its place): redis-py's own pipeline
        costs several times more per call, which the hot path feels."""
        pool = self.client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(b"".join(_pack(s, keys, args) for s, keys, args, _ in batch), False)
            replies: list[Any] = []
            async with asyncio.timeout(TIMEOUT_S):  # one deadline for the batch, not one per reply
                for _ in batch:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:
                        replies.append(exc)
            return replies
        except BaseException:
            await conn.disconnect()  # replies may be left unread on it
            raise
        finally:
            await pool.release(conn)

    async def ping(self) -> None:
        """Raise :class:`RedisUnavailable` unless Redis answers."""
        try:
            await self.client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise _translate(exc) from exc

    async def publish(self, channel: str, payload: bytes) -> None:
        """Publish on a channel (not prefixed here); raises :class:`RedisUnavailable`."""
        try:
            await self.client.publish(channel, payload)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _translate(exc) from exc

    async def close(self) -> None:
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        await self.client.aclose()


def _pack(script: Script, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """``EVALSHA`` as a RESP command."""
    items = [b"EVALSHA", script.sha_bytes, b"%d" % len(keys), *(key.encode() for key in keys), *map(_encode, args)]
    return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%s\r\n" % (len(item), item) for item in items)


def _encode(value: Arg) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()  # int, or float as redis-py sends it


def _translate(exc: BaseException) -> RedisUnavailable:
    error = RedisUnavailable(f"Redis unreachable: {type(exc).__name__}")
    error.__cause__ = exc
    return error
