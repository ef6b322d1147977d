"""The Redis script (lua/spend.lua, lua/refund.lua) decides exactly as the pure core (keystile.core.ratelimit).

The script reads Redis's clock, so time cannot be set; it is moved instead by shifting the stored TATs back (a
bucket whose TAT is d earlier looks, at any now, exactly as it would d later). Each step compares the script's
answer with ``decide()`` on the same TATs and the ``now`` the script reports using.
"""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keystile.core.clock import ManualClock
from keystile.core.ratelimit import Bucket, decide, refund, state
from keystile.redis.connection import RedisConnection
from keystile.redis.scripts import Script

LIMITS = st.lists(st.tuples(st.integers(1, 60), st.integers(1, 120_000)), min_size=1, max_size=3)
STEPS = st.lists(
    st.tuples(st.lists(st.integers(0, 70), min_size=3, max_size=3), st.integers(0, 130_000_000)),
    min_size=1,
    max_size=30,
)


async def _tats(client: aioredis.Redis, keys: list[str]) -> list[int | None]:
    values = await client.mget(keys)
    return [None if value is None else int(value) for value in values]


async def _compare(url: str, prefix: str, limits: list[tuple[int, int]], steps: list[tuple[list[int], int]]) -> None:
    conn = RedisConnection(url, prefix, ManualClock())
    client = aioredis.Redis.from_url(url)
    spend = Script("spend")
    keys = [f"{prefix}b{i}" for i in range(len(limits))]
    try:
        for costs, elapsed_us in steps:
            for key, tat in zip(keys, await _tats(client, keys), strict=True):
                if tat is not None:
                    await client.set(key, tat - elapsed_us, keepttl=True)
            buckets = [
                Bucket(key, f"l{i}", limit, duration, costs[i])
                for i, (key, (limit, duration)) in enumerate(zip(keys, limits, strict=True))
            ]
            before = await _tats(client, keys)
            args: list[str | int | float | bytes] = [1, len(buckets), len(buckets)]  # a batch of one verification
            for b in buckets:
                args += (b.limit, b.interval, b.cost)
            [reply] = await conn.call(spend, keys, args)
            now = reply[1]
            expected = decide(before, now, buckets)
            assert (reply[0] == 0) == expected.allowed, (before, now, buckets)
            got = [(reply[6 + 2 * i], reply[7 + 2 * i] / 1000) for i in range(len(buckets))]
            assert got == [(s.remaining, s.reset_at) for s in expected.states]
            if not expected.allowed:
                assert reply[5] / 1000 == expected.retry_after_ms
            after = await _tats(client, keys)
            seconds, micros = await client.time()
            for got_tat, want in zip(after, expected.tats if expected.allowed else before, strict=True):
                if got_tat is None and want is not None:
                    # A bucket that is full again expires (its TTL rounded up to a whole millisecond).
                    assert want <= seconds * 1_000_000 + micros + 1000
                else:
                    assert got_tat == want
    finally:
        await conn.close()
        await client.aclose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=LIMITS, steps=STEPS)
def test_the_redis_script_decides_as_the_core_on_random_sequences(
    redis_url: str, prefix: str, limits: list[tuple[int, int]], steps: list[tuple[list[int], int]]
) -> None:
    asyncio.run(_compare(redis_url, f"{prefix}{secrets.token_hex(4)}:", limits, steps))


# Groups of alike verifications: (bucket index, cost) pairs, and how many verifications.
PARTS = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 30)), min_size=1, max_size=3, unique_by=lambda p: p[0]),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=8,
)


async def _compare_batch(
    url: str, prefix: str, limits: list[tuple[int, int]], parts: list[tuple[list[tuple[int, int]], int]]
) -> None:
    conn = RedisConnection(url, prefix, ManualClock())
    client = aioredis.Redis.from_url(url)
    keys = [f"{prefix}b{i}" for i in range(len(limits))]
    try:
        batch_keys: list[str] = []
        args: list[str | int | float | bytes] = []
        spends = []
        for part, count in parts:
            buckets = [Bucket(keys[i], f"l{i}", *limits[i], cost) for i, cost in part if i < len(limits)]
            if not buckets:
                continue
            spends += [buckets] * count
            batch_keys += [b.key for b in buckets]
            args += [count, len(buckets), len(buckets)]
            for b in buckets:
                args += (b.limit, b.interval, b.cost)
        if not spends:
            return
        replies = await conn.call(Script("spend"), batch_keys, args)
        now = replies[0][1]
        tats: dict[str, int | None] = dict.fromkeys(keys)  # the keys are fresh: every bucket starts full
        for buckets, reply in zip(spends, replies, strict=True):
            assert reply[1] == now, "one instant for the whole batch"
            expected = decide([tats[b.key] for b in buckets], now, buckets)
            assert (reply[0] == 0) == expected.allowed
            assert [(reply[6 + 2 * i], reply[7 + 2 * i] / 1000) for i in range(len(buckets))] == [
                (s.remaining, s.reset_at) for s in expected.states
            ]
            if expected.allowed:
                tats.update(zip([b.key for b in buckets], expected.tats, strict=True))
        seconds, micros = await client.time()
        for key, stored in zip(keys, await _tats(client, keys), strict=True):
            want = tats[key]
            if stored is None and want is not None:
                assert want <= seconds * 1_000_000 + micros + 1000, "expired only once full again"
            else:
                assert stored == want, "each bucket written once, with its last TAT"
    finally:
        await conn.close()
        await client.aclose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=LIMITS, parts=PARTS)
def test_a_batch_decides_as_its_verifications_one_after_the_other(
    redis_url: str, prefix: str, limits: list[tuple[int, int]], parts: list[tuple[list[tuple[int, int]], int]]
) -> None:
    asyncio.run(_compare_batch(redis_url, f"{prefix}{secrets.token_hex(4)}:", limits, parts))


async def test_the_refund_script_gives_back_as_the_core(
    conn: RedisConnection, client: aioredis.Redis, prefix: str
) -> None:
    bucket = Bucket(f"{prefix}r", "r", 7, 60_000, 3)
    spend, give_back = Script("spend"), Script("refund")
    for _ in range(2):
        await conn.call(spend, [bucket.key], [1, 1, 1, bucket.limit, bucket.interval, bucket.cost])
    [before] = await _tats(client, [bucket.key])
    assert before is not None
    reply = await conn.call(give_back, [bucket.key], [bucket.limit, bucket.interval, bucket.cost])
    now = reply[0]
    [after] = await _tats(client, [bucket.key])
    assert after == refund(before, now, bucket)
    expected = state(after, now, bucket)
    assert (reply[1], reply[2] / 1000) == (expected.remaining, expected.reset_at)


async def test_a_refund_of_a_bucket_that_expired_changes_nothing(
    conn: RedisConnection, client: aioredis.Redis, prefix: str
) -> None:
    bucket = Bucket(f"{prefix}gone", "gone", 5, 1000)
    reply = await conn.call(Script("refund"), [bucket.key], [bucket.limit, bucket.interval, bucket.cost])
    assert reply[1] == 5
    assert await client.exists(bucket.key) == 0
