"""The connection's breaker and probes (SPEC L2: recover by itself): an outage opens the breaker once and is
logged once, however many calls and probes fail during it; calls then fail at once, without waiting; the
background probes find Redis back without a restart, and that is logged once too.

The breaker's backoff runs on a manual clock that stays still; the probes are real time, and the test polls for
them (another process's availability).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from keystile.core.clock import ManualClock
from keystile.redis.connection import RedisConnection, RedisUnavailable
from tests.redis.redis_server import RedisServer

POLL_S = 10.0


async def test_an_outage_opens_the_breaker_once_and_probes_find_redis_back(
    own_redis: RedisServer, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keystile.limits")
    conn = RedisConnection(own_redis.url, "t:", clock)
    try:
        await conn.ping()
        own_redis.stop()
        with pytest.raises(RedisUnavailable):
            await conn.ping()
        assert conn.breaker.down
        failures = conn.breaker.failures
        for _ in range(20):  # refused at once while the breaker is open: none of them tries Redis
            with pytest.raises(RedisUnavailable, match="tried again in the background"):
                await conn.publish("t:changes", b"x")
        assert conn.breaker.failures == failures
        await _until(lambda: conn.breaker.failures >= failures + 3, "three background probes failing")
        [warning] = _lines(caplog)
        assert warning.startswith("Redis is unreachable (")
        own_redis.start()
        await _until(lambda: not conn.breaker.down, "a background probe finding Redis back")
        await conn.ping()
        assert _lines(caplog) == [warning, "Redis answers again"]
    finally:
        await conn.close()


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "keystile.limits"]


async def _until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        assert loop.time() - start < POLL_S, f"{what} not within {POLL_S} s"
        await asyncio.sleep(0.02)  # polling the background probes against another process
