"""RedisSpender on the shared Redis (SPEC L1, L2, L3): exact under concurrency, all or nothing, one round trip
per verification shared by every verification in flight."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis

from keystile.core.clock import ManualClock
from keystile.core.models import Credits
from keystile.core.ports import Outcome, Spend
from keystile.core.ratelimit import Bucket
from keystile.core.verify import Code
from keystile.limits.redis import RedisSpender
from keystile.redis.connection import RedisConnection
from keystile.storage import SqlStorage, open_storage


@pytest.fixture
async def memory() -> Any:
    store = await open_storage("memory://", ManualClock())
    await store.migrate()
    yield store
    await store.close()


def now_ms(clock: ManualClock) -> float:
    return clock.now() * 1000


async def spend_all(spender: RedisSpender, spends: list[Spend], clock: ManualClock) -> list[Outcome]:
    return list(await asyncio.gather(*(spender.spend(s, now_ms(clock)) for s in spends)))


def codes(outcomes: list[Outcome]) -> Counter[str]:
    return Counter(outcome.code for outcome in outcomes)


async def add_balance(storage: SqlStorage, credit_id: str, remaining: int, refilled_at: int = 0) -> Credits:
    async with storage.driver.transaction() as tx:
        await tx.execute(
            "INSERT INTO credits (id, remaining, refilled_at, updated_at) VALUES ($1, $2, $3, 0)",
            credit_id,
            remaining,
            refilled_at,
        )
    return Credits(credit_id, remaining, None, refilled_at)


async def test_exactly_the_limit_of_hundreds_of_concurrent_verifications_pass(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory)
    bucket = Bucket("k:key_a:api", "api", 50, 10_000)
    outcomes = await spend_all(spender, [Spend((bucket,), None, 1)] * 500, clock)
    assert codes(outcomes) == {Code.VALID: 50, Code.RATE_LIMITED: 450}
    assert conn.round_trips < 20, "concurrent verifications share round trips"
    assert min(o.ratelimits[0].remaining for o in outcomes) == 0
    assert sorted(o.ratelimits[0].remaining for o in outcomes if o.code == Code.VALID) == list(range(50))


async def test_several_limits_are_spent_all_or_nothing(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory)
    tight, loose = Bucket("k:key_b:tight", "tight", 2, 60_000), Bucket("k:key_b:loose", "loose", 5, 60_000)
    outcomes = await spend_all(spender, [Spend((tight, loose), None, 1)] * 6, clock)
    assert codes(outcomes) == {Code.VALID: 2, Code.RATE_LIMITED: 4}
    refused = next(o for o in outcomes if o.code == Code.RATE_LIMITED)
    assert [(s.name, s.remaining) for s in refused.ratelimits] == [("tight", 0), ("loose", 3)]
    alone = await spend_all(spender, [Spend((loose,), None, 1)] * 5, clock)
    assert codes(alone) == {Code.VALID: 3, Code.RATE_LIMITED: 2}, "refused requests took nothing from 'loose'"


async def test_a_cost_above_one_takes_that_much_capacity(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory)
    bucket = Bucket("k:key_c:api", "api", 10, 60_000, cost=4)
    outcomes = [await spender.spend(Spend((bucket,), None, 1), now_ms(clock)) for _ in range(3)]
    assert [o.code for o in outcomes] == [Code.VALID, Code.VALID, Code.RATE_LIMITED]
    assert [o.ratelimits[0].remaining for o in outcomes] == [6, 2, 2]


async def test_database_credits_that_refuse_give_the_rate_limit_back(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory)
    credits = await add_balance(memory, "cr_db", 2)
    bucket = Bucket("k:key_d:api", "api", 5, 60_000)
    outcomes = await spend_all(spender, [Spend((bucket,), credits, 1)] * 5, clock)
    assert codes(outcomes) == {Code.VALID: 2, Code.USAGE_EXCEEDED: 3}
    assert await memory.credit_state("cr_db") == (0, 0)
    left = await spend_all(spender, [Spend((bucket,), None, 1)] * 4, clock)
    assert codes(left) == {Code.VALID: 3, Code.RATE_LIMITED: 1}, "refused requests spent no rate limit"


async def test_concurrent_calls_go_out_in_one_write(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory)
    await spender.spend(Spend((Bucket("k:warm:x", "x", 1, 1000),), None, 1), now_ms(clock))  # connect, load
    writes, calls = conn.round_trips, conn.calls
    buckets = [Bucket(f"k:key_{i}:api", "api", 3, 1000) for i in range(200)]
    outcomes = await spend_all(spender, [Spend((b,), None, 1) for b in buckets], clock)
    assert codes(outcomes) == {Code.VALID: 200}
    assert conn.calls - calls == 200
    assert 1 <= conn.round_trips - writes <= 3, f"200 verifications took {conn.round_trips - writes} writes"


async def test_redis_credits_let_exactly_the_balance_through(
    conn: RedisConnection, storage: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, storage, credits_in_redis=True)
    credits = await add_balance(storage, "cr_exact", 37)
    outcomes = await spend_all(spender, [Spend((), credits, 1)] * 300, clock)
    assert codes(outcomes) == {Code.VALID: 37, Code.USAGE_EXCEEDED: 263}
    assert sorted(o.remaining or 0 for o in outcomes if o.code == Code.VALID) == list(range(37))
    assert spender.loads == 1, "concurrent first spends share one database read"
    assert spender.writeback is not None
    assert await spender.writeback.flush() == 37
    assert await storage.credit_state("cr_exact") == (0, 0)


async def test_redis_credits_and_limits_refuse_together(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory, credits_in_redis=True)
    credits = await add_balance(memory, "cr_both", 3)
    bucket = Bucket("k:key_e:api", "api", 5, 60_000)
    first = await spend_all(spender, [Spend((bucket,), credits, 1)] * 5, clock)
    assert codes(first) == {Code.VALID: 3, Code.USAGE_EXCEEDED: 2}
    rest = await spend_all(spender, [Spend((bucket,), None, 1)] * 3, clock)
    assert codes(rest) == {Code.VALID: 2, Code.RATE_LIMITED: 1}, "credit refusals took no rate limit"
    limited = await spend_all(spender, [Spend((bucket,), credits, 1)], clock)
    assert codes(limited) == {Code.RATE_LIMITED: 1}, "RATE_LIMITED is checked before USAGE_EXCEEDED"


async def test_redis_credits_refill_lazily_and_the_refill_is_written_back(
    conn: RedisConnection, storage: SqlStorage, clock: ManualClock
) -> None:
    from keystile.core.credits import last_refill_moment
    from keystile.core.models import Refill

    spender = RedisSpender(conn, storage, credits_in_redis=True)
    refill = Refill(4, "daily")
    today = last_refill_moment(refill, int(now_ms(clock)))
    await add_balance(storage, "cr_daily", 1, refilled_at=today)
    credits = Credits("cr_daily", 1, refill, today)
    assert codes(await spend_all(spender, [Spend((), credits, 1)] * 3, clock)) == {
        Code.VALID: 1,
        Code.USAGE_EXCEEDED: 2,
    }
    clock.advance(86_400)
    outcomes = await spend_all(spender, [Spend((), credits, 1)] * 6, clock)
    assert codes(outcomes) == {Code.VALID: 4, Code.USAGE_EXCEEDED: 2}
    assert spender.writeback is not None
    await spender.writeback.flush()
    assert await storage.credit_state("cr_daily") == (0, today + 86_400_000)


async def test_the_background_write_back_reaches_the_database(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory, credits_in_redis=True)
    credits = await add_balance(memory, "cr_bg", 10)
    await spender.start()
    try:
        assert codes(await spend_all(spender, [Spend((), credits, 1)] * 4, clock)) == {Code.VALID: 4}
        deadline = asyncio.get_running_loop().time() + 5
        while await memory.credit_state("cr_bg") != (6, 0):
            assert asyncio.get_running_loop().time() < deadline, "no write-back within 5 s"
            await asyncio.sleep(0.05)  # polling the database for the write-back
    finally:
        await spender.close()
    assert spender.stats["credits_written_back"] == 4


async def test_after_redis_loses_a_counter_only_what_was_not_written_back_is_spent_again(
    conn: RedisConnection, client: aioredis.Redis, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory, credits_in_redis=True)
    credits = await add_balance(memory, "cr_lost", 100)
    assert spender.writeback is not None
    assert codes(await spend_all(spender, [Spend((), credits, 1)] * 30, clock)) == {Code.VALID: 30}
    await spender.writeback.flush()
    assert codes(await spend_all(spender, [Spend((), credits, 1)] * 20, clock)) == {Code.VALID: 20}
    await client.delete(conn.key("c:cr_lost"), conn.key("credits:dirty"))  # as if Redis lost them
    after = await spend_all(spender, [Spend((), credits, 1)] * 200, clock)
    assert codes(after)[Code.VALID] == 70, "reloaded from the database: the 20 not written back are spent again"
    await spender.writeback.flush()
    assert await memory.credit_state("cr_lost") == (0, 0)


async def test_a_lost_redis_dataset_is_counted(
    conn: RedisConnection, client: aioredis.Redis, memory: SqlStorage, clock: ManualClock
) -> None:
    spender = RedisSpender(conn, memory, credits_in_redis=True)
    credits = await add_balance(memory, "cr_flushed", 10)
    await spender.spend(Spend((), credits, 1), now_ms(clock))
    keys = [key async for key in client.scan_iter(match=conn.prefix + "*")]
    await client.delete(*keys)  # FLUSHDB, limited to this test's keys
    outcome = await spender.spend(Spend((), credits, 1), now_ms(clock))
    assert (outcome.code, outcome.remaining) == (Code.VALID, 9)  # reloaded from the database: 10, minus this one
    assert spender.stats["data_losses"] == 1


async def test_a_balance_changed_by_an_api_call_is_reloaded_without_losing_pending_spends(
    conn: RedisConnection, memory: SqlStorage, clock: ManualClock
) -> None:
    from keystile.core.ports import Change

    spender = RedisSpender(conn, memory, credits_in_redis=True)
    credits = await add_balance(memory, "cr_added", 10)
    assert codes(await spend_all(spender, [Spend((), credits, 1)] * 4, clock)) == {Code.VALID: 4}
    async with memory.driver.transaction() as tx:  # "add 90" while 4 spends are not written back yet
        await tx.execute("UPDATE credits SET remaining = remaining + 90 WHERE id = 'cr_added'")
    spender.apply_changes([Change("credits", "cr_added")])
    outcomes = await spend_all(spender, [Spend((), credits, 1)] * 120, clock)
    assert codes(outcomes) == {Code.VALID: 96, Code.USAGE_EXCEEDED: 24}
    assert spender.writeback is not None
    await spender.writeback.flush()
    assert await memory.credit_state("cr_added") == (0, 0)


async def test_a_deleted_balance_is_exhausted(conn: RedisConnection, memory: SqlStorage, clock: ManualClock) -> None:
    spender = RedisSpender(conn, memory, credits_in_redis=True)
    outcome = await spender.spend(Spend((), Credits("cr_gone", 5), 1), now_ms(clock))
    assert (outcome.code, outcome.remaining) == (Code.USAGE_EXCEEDED, 0)


def test_spends_go_through_redis_on_uvloop_as_the_server_runs_them(redis_url: str, prefix: str) -> None:
    import uvloop

    async def storm() -> Counter[str]:
        clock = ManualClock()
        store = await open_storage("memory://", clock)
        connection = RedisConnection(redis_url, prefix, clock)
        try:
            spender = RedisSpender(connection, store)
            bucket = Bucket("k:key_uv:api", "api", 5, 60_000)
            outcomes = await spend_all(spender, [Spend((bucket,), None, 1)] * 20, clock)
            assert connection.errors == 0
            return codes(outcomes)
        finally:
            await connection.close()
            await store.close()

    assert uvloop.run(storm()) == {Code.VALID: 5, Code.RATE_LIMITED: 15}
