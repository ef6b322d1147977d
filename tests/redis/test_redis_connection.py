"""The Redis connection (SPEC L2): one write per batch, the handshake the URL asks for, a script Redis
forgot loaded again, and a Redis that stops answering failing the batch at its deadline and opening the breaker.

Each test runs a Redis server of its own; the breaker's backoff runs on the manual clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from keystile.core.clock import ManualClock
from keystile.core.ports import Spend
from keystile.core.ratelimit import Bucket
from keystile.core.verify import Code
from keystile.limits.redis import RedisSpender
from keystile.redis import scripts
from keystile.redis.connection import RedisConnection, RedisUnavailable
from keystile.storage import SqlStorage, open_storage

from .redis_server import RedisServer


@pytest.fixture
async def memory(clock: ManualClock) -> AsyncIterator[SqlStorage]:
    store = await open_storage("memory://", clock)
    await store.migrate()
    yield store
    await store.close()


async def spend_many(spender: RedisSpender, bucket: Bucket, clock: ManualClock, n: int) -> Counter[str]:
    spend = Spend((bucket,), None, 1)
    outcomes = await asyncio.gather(*(spender.spend(spend, clock.now() * 1000) for _ in range(n)))
    return Counter(outcome.code for outcome in outcomes)


async def test_a_script_redis_forgot_is_loaded_again_for_the_whole_batch(
    own_redis: RedisServer, memory: SqlStorage, clock: ManualClock
) -> None:
    conn = RedisConnection(own_redis.url, "t:", clock)
    try:
        spender = RedisSpender(conn, memory)
        bucket = Bucket("k:key_f:api", "api", 10, 60_000)
        assert await spend_many(spender, bucket, clock, 4) == {Code.VALID: 4}
        plain = aioredis.Redis(port=own_redis.port)
        await plain.script_flush()
        await plain.aclose()
        assert await spend_many(spender, bucket, clock, 8) == {Code.VALID: 6, Code.RATE_LIMITED: 2}
        assert conn.errors == 0
    finally:
        await conn.close()


async def test_the_url_password_and_database_are_used(own_redis: RedisServer, clock: ManualClock) -> None:
    admin = aioredis.Redis(port=own_redis.port)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    conn = RedisConnection(f"redis://:s3cret@127.0.0.1:{own_redis.port}/3", "t:", clock)
    store = await open_storage("memory://", clock)
    try:
        spender = RedisSpender(conn, store)
        assert await spend_many(spender, Bucket("k:key_a:api", "api", 2, 60_000), clock, 3) == {
            Code.VALID: 2,
            Code.RATE_LIMITED: 1,
        }
        db3 = aioredis.Redis(port=own_redis.port, password="s3cret", db=3)
        assert await db3.exists("t:k:key_a:api") == 1, "the bucket is in database 3"
        await db3.aclose()
    finally:
        await conn.close()
        await store.close()


async def test_a_wrong_password_makes_redis_unavailable(own_redis: RedisServer, clock: ManualClock) -> None:
    admin = aioredis.Redis(port=own_redis.port)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    conn = RedisConnection(f"redis://:wrong@127.0.0.1:{own_redis.port}/0", "t:", clock)
    try:
        with pytest.raises(RedisUnavailable):
            await conn.call(scripts.Script("refund"), ["t:k:x"], [1, 1000, 1])
        assert conn.breaker.down, "a refused connection opens the breaker"
    finally:
        await conn.close()


async def test_a_redis_that_stops_answering_fails_the_batch_at_its_deadline_and_the_batch_never_runs_late(
    own_redis: RedisServer, memory: SqlStorage, clock: ManualClock
) -> None:
    conn = RedisConnection(own_redis.url, "t:", clock, timeout_s=0.05)  # the deadline of a batch, in real time
    try:
        spender = RedisSpender(conn, memory, on_failure="closed")
        bucket = Bucket("k:key_s:api", "api", 5, 60_000)
        assert await spend_many(spender, bucket, clock, 2) == {Code.VALID: 2}
        own_redis.pause()
        try:
            assert await spend_many(spender, bucket, clock, 3) == {Code.RATE_LIMITED: 3}, "closed: refused"
            assert spender.stats["redis_errors"] == 3
            assert conn.breaker.down
        finally:
            own_redis.resume()  # the server now reads the batch given up on: it comes too late to spend anything
        conn.timeout_s = 1.0  # a server just woken up may take longer than 50 ms
        assert await conn.probe(), "the probe finds Redis back and closes the breaker"
        assert await spend_many(spender, bucket, clock, 4) == {Code.VALID: 3, Code.RATE_LIMITED: 1}, (
            "2 spent before, 3 now: the 3 refused while Redis was frozen spent nothing"
        )
    finally:
        await conn.close()


def test_a_paused_own_redis_is_stopped_all_the_same(own_redis: RedisServer) -> None:
    """A test that fails while its Redis is paused must not leave the server behind, frozen."""
    process = own_redis._process
    assert process is not None
    own_redis.pause()

    own_redis.stop()

    assert process.poll() is not None
