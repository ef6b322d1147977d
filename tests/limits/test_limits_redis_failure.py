"""When Redis fails (SPEC L2, L3): verification keeps answering as ``ratelimit_on_redis_failure`` says, credits
never fail open, nothing raises, and limits go through Redis again once it is back, without a restart.

Each test runs a Redis server of its own (never the shared one), stops it mid-run and starts it again; instead
of waiting for the background probe to find it back, the tests probe it themselves.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewCredits, NewKey
from keystile.core.models import Credits, RateLimit
from keystile.core.ports import Outcome, Spend
from keystile.core.ratelimit import Bucket
from keystile.core.verify import Code
from keystile.limits.redis import RedisSpender
from keystile.redis.connection import RedisConnection
from keystile.service import Keystile
from keystile.service.authz import Actor
from keystile.storage import SqlStorage, open_storage
from tests.redis.redis_server import RedisServer

BUCKET = Bucket("k:key_x:api", "api", 3, 60_000)


@pytest.fixture
async def memory(clock: ManualClock) -> AsyncIterator[SqlStorage]:
    store = await open_storage("memory://", clock)
    await store.migrate()
    yield store
    await store.close()


@pytest.fixture
async def own_conn(own_redis: RedisServer, clock: ManualClock) -> AsyncIterator[RedisConnection]:
    connection = RedisConnection(own_redis.url, "t:", clock)
    yield connection
    await connection.close()


async def spend_many(spender: RedisSpender, spend: Spend, clock: ManualClock, n: int) -> Counter[str]:
    outcomes: list[Outcome] = await asyncio.gather(*(spender.spend(spend, clock.now() * 1000) for _ in range(n)))
    return Counter(outcome.code for outcome in outcomes)


async def test_fail_open_hands_limits_to_this_process_and_takes_them_back(
    own_redis: RedisServer, own_conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(own_conn, memory, on_failure="open")
    spend = Spend((BUCKET,), None, 1)
    assert await spend_many(spender, spend, clock, 4) == {Code.VALID: 3, Code.RATE_LIMITED: 1}

    own_redis.stop()
    assert await spend_many(spender, spend, clock, 5) == {Code.VALID: 3, Code.RATE_LIMITED: 2}, "local limits"
    assert spender.stats["redis_errors"] >= 1
    assert spender.stats["local_decisions"] >= 5
    assert spender.spend_now(spend, clock.now() * 1000) is not None, "no waiting on a Redis known to be down"

    own_redis.start()  # empty: its scripts and buckets are gone
    assert await own_conn.probe()
    assert await spend_many(spender, spend, clock, 5) == {Code.VALID: 3, Code.RATE_LIMITED: 2}
    plain = aioredis.Redis(port=own_redis.port)
    assert await plain.exists("t:" + BUCKET.key) == 1, "limits are enforced through Redis again"
    await plain.aclose()
    assert spender.spend_now(spend, clock.now() * 1000) is None


async def test_fail_closed_refuses_while_redis_is_away_and_recovers(
    own_redis: RedisServer, own_conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(own_conn, memory, on_failure="closed")
    spend = Spend((BUCKET,), None, 1)
    assert await spend_many(spender, spend, clock, 1) == {Code.VALID: 1}

    own_redis.stop()
    assert await spend_many(spender, spend, clock, 3) == {Code.RATE_LIMITED: 3}
    refused = spender.spend_now(spend, clock.now() * 1000)
    assert refused is not None
    assert refused.code == Code.RATE_LIMITED
    assert refused.ratelimits[0].reset_at >= clock.now() * 1000, "reset_at says when to try again"
    assert spender.stats["closed_refusals"] >= 4

    own_redis.start()
    assert await own_conn.probe()
    assert await spend_many(spender, spend, clock, 4) == {Code.VALID: 3, Code.RATE_LIMITED: 1}


async def test_redis_credits_fall_back_to_the_database_and_stay_exact(
    own_redis: RedisServer, own_conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(own_conn, memory, on_failure="open", credits_in_redis=True)
    async with memory.driver.transaction() as tx:
        await tx.execute("INSERT INTO credits (id, remaining, refilled_at, updated_at) VALUES ('cr_1', 10, 0, 0)")
    spend = Spend((), Credits("cr_1", 10, None, 0), 1)
    assert await spend_many(spender, spend, clock, 3) == {Code.VALID: 3}
    assert spender.writeback is not None
    await spender.writeback.flush()

    own_redis.stop()
    assert await spend_many(spender, spend, clock, 2) == {Code.VALID: 2}
    assert await memory.credit_state("cr_1") == (5, 0), "spent in the database, not failed open"
    assert spender.stats["database_credits"] == 2
    assert await spender.writeback.flush() == 0, "a write-back without Redis fails quietly"

    own_redis.start()
    assert await own_conn.probe()
    assert await spend_many(spender, spend, clock, 20) == {Code.VALID: 5, Code.USAGE_EXCEEDED: 15}
    await spender.writeback.flush()
    assert await memory.credit_state("cr_1") == (0, 0)


async def test_a_write_back_given_up_on_takes_nothing_when_it_reaches_redis_late(
    own_redis: RedisServer, own_conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(own_conn, memory, credits_in_redis=True)
    async with memory.driver.transaction() as tx:
        await tx.execute("INSERT INTO credits (id, remaining, refilled_at, updated_at) VALUES ('cr_w', 10, 0, 0)")
    spend = Spend((), Credits("cr_w", 10, None, 0), 1)
    assert await spend_many(spender, spend, clock, 1) == {Code.VALID: 1}
    assert spender.writeback is not None
    assert await spender.writeback.flush() == 1  # Redis knows the write-back's scripts from now on
    assert await spend_many(spender, spend, clock, 4) == {Code.VALID: 4}

    own_redis.pause()
    try:
        assert await spender.writeback.flush() == 0, "the take timed out"
    finally:
        own_redis.resume()  # the server now reads the take given up on: too late to take anything
    assert await own_conn.probe()
    assert await spender.writeback.flush() == 4, "the spends are still in Redis, to be written back"
    assert await memory.credit_state("cr_w") == (5, 0)


async def test_a_counter_spent_around_while_redis_kept_its_data_is_reloaded(
    own_redis: RedisServer, own_conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(own_conn, memory, credits_in_redis=True)
    async with memory.driver.transaction() as tx:
        await tx.execute("INSERT INTO credits (id, remaining, refilled_at, updated_at) VALUES ('cr_2', 10, 0, 0)")
    spend = Spend((), Credits("cr_2", 10, None, 0), 1)
    assert await spend_many(spender, spend, clock, 3) == {Code.VALID: 3}
    assert spender.writeback is not None
    await spender.writeback.flush()

    # Redis refuses this process (a password appears) but keeps its data, counter included.
    plain = aioredis.Redis(port=own_redis.port)
    await plain.config_set("requirepass", "s3cret")
    await plain.aclose()
    admin = aioredis.Redis(port=own_redis.port, password="s3cret")
    await admin.client_kill_filter(_type="normal", skipme=True)
    assert await spend_many(spender, spend, clock, 2) == {Code.VALID: 2}
    assert await memory.credit_state("cr_2") == (5, 0)

    await admin.config_set("requirepass", "")
    await admin.aclose()
    assert await spend_many(spender, spend, clock, 20) == {Code.VALID: 5, Code.USAGE_EXCEEDED: 15}, (
        "the counter (7 in Redis) was reloaded from the database (5)"
    )


async def test_verification_keeps_answering_through_a_redis_outage(own_redis: RedisServer, clock: ManualClock) -> None:
    settings = Settings(database_url="memory://", redis_url=own_redis.url, redis_prefix="t:", credits_mode="redis")
    ks = await Keystile.open(settings, clock)
    try:
        await ks.storage.migrate()
        created = await ks.root_keys.bootstrap()
        assert created is not None
        actor = Actor(await ks.root_keys.authenticate(created[1]), "127.0.0.1", "pytest")
        api = await ks.apis.create(actor, NewApi(name="outage"))
        spec = NewKey(credits=NewCredits(remaining=6), ratelimits=[RateLimit("api", 4, 60_000)])
        key, plain = await ks.keys.create(actor, api.id, spec)
        assert key.credits is not None
        verifier = ks.ctx.verifier

        async def verify(n: int) -> Counter[str]:
            return Counter([(await verifier.verify(plain)).code for _ in range(n)])

        assert await verify(2) == {Code.VALID: 2}
        spender = verifier.spender
        assert isinstance(spender, RedisSpender)
        assert spender.writeback is not None
        await spender.writeback.flush()
        own_redis.stop()
        assert await verify(5) == {Code.VALID: 4, Code.RATE_LIMITED: 1}, "local limits (4), database credits"
        own_redis.start()
        assert await spender.redis.probe()
        assert await verify(3) == {Code.USAGE_EXCEEDED: 3}, "6 credits in all, whatever failed"
        assert await ks.storage.credit_state(key.credits.id) == (0, key.credits.refilled_at)
    finally:
        await ks.close()
