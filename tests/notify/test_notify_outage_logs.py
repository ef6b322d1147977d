"""A change subscription that cannot be made, or is lost, is logged once, not at every attempt (issue 9): one
warning naming where (without the password) and why, a reminder at most once a minute with how long it has been
down, and one line when it is back. The attempts themselves go on at most a second apart (the caches count on it:
SPEC V6), and the changes the listeners see are as before: ``lost`` after every failed attempt, ``all`` when back.

Redis: a port with nothing on it, where a redis-server of the test's own starts later. PostgreSQL: the test's
database behind a TCP proxy that is cut from the start and restored later. The reminder's minute passes on a
manual clock; the attempts are real time, and the tests poll for them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from keystile.core.clock import ManualClock
from keystile.core.ports import Change
from keystile.notify._bus import NotifyingBus
from keystile.notify.postgresql import PostgresChangeBus
from keystile.notify.redis import RedisChangeBus
from keystile.redis.connection import RedisConnection
from keystile.storage import SqlStorage, open_storage
from tests.availability import missing as service_missing
from tests.redis.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

PASSWORD = "s3cret-pw"
ATTEMPTS = 5
"""Failed attempts to wait for before counting warnings: 0.1 + 0.2 + 0.4 + 0.8 s of backoff, then 1 s each."""
POLL_S = 15.0
"""How long the tests poll for the bus's next attempt, or for it to subscribe (real time, another connection)."""


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Change] = []

    def __call__(self, changes: Sequence[Change]) -> None:
        self.seen.extend(changes)

    @property
    def lost(self) -> int:
        return self.seen.count(Change("lost"))


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        assert loop.time() - start < POLL_S, f"{what} not within {POLL_S} s"
        await asyncio.sleep(0.02)  # polling the bus's attempts on another connection, not waiting for time to pass


def bus_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "keystile.notify" and r.levelno == level]


async def fail_then_come_back(
    bus: NotifyingBus, clock: ManualClock, caplog: pytest.LogCaptureFixture, where: str, back: Callable[[], None]
) -> Recorder:
    """Start ``bus`` while what it subscribes to is away; check the warnings while it stays away, then ``back()``
    and check that it subscribes and says so once."""
    caplog.set_level(logging.INFO, logger="keystile.notify")
    seen = Recorder()
    bus.subscribe(seen)
    await bus.start()
    await until(lambda: seen.lost >= ATTEMPTS, f"{ATTEMPTS} failed attempts")
    [warning] = bus_lines(caplog, logging.WARNING)
    assert where in warning, "it says where, without the password"
    assert "cannot be made" in warning
    assert not bus.connected

    clock.advance(61)
    attempts = seen.lost
    await until(lambda: seen.lost >= attempts + 2, "two more attempts a minute later")
    warnings = bus_lines(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert "still down after 61 s" in warnings[1]
    assert where in warnings[1]

    back()
    await until(lambda: bus.connected, "the subscription coming back")
    [info] = bus_lines(caplog, logging.INFO)
    assert where in info
    assert "is back" in info
    assert seen.seen[-1] == Change("all"), "back: changes may have been missed meanwhile"
    assert len(bus_lines(caplog, logging.WARNING)) == 2
    assert PASSWORD not in caplog.text
    return seen


@pytest.fixture
def redis_away(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own that asks for a password, not started yet: nothing on its port."""
    if shutil.which("redis-server") is None:
        service_missing("redis-server")
    server = RedisServer(tmp_path, password=PASSWORD)
    yield server
    server.stop()


async def test_an_unreachable_redis_is_logged_once_and_its_return_once(
    redis_away: RedisServer, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisConnection(redis_away.url, "t:", clock)
    bus = RedisChangeBus(redis)
    try:
        await fail_then_come_back(
            bus, clock, caplog, f"Redis at redis://:***@127.0.0.1:{redis_away.port}/0", redis_away.start
        )
        [warning, _] = bus_lines(caplog, logging.WARNING)
        assert "Connect" in warning, "it says why (the connection was refused)"
    finally:
        await bus.close()
        await redis.close()


async def test_a_lost_redis_subscription_is_logged_once_as_lost_and_once_back(
    redis_away: RedisServer, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keystile.notify")
    redis_away.start()
    redis = RedisConnection(redis_away.url, "t:", clock)
    bus = RedisChangeBus(redis)
    seen = Recorder()
    bus.subscribe(seen)
    try:
        await bus.start()
        assert bus.connected
        assert bus_lines(caplog, logging.INFO) + bus_lines(caplog, logging.WARNING) == [], "made at once: no word"
        redis_away.stop()
        await until(lambda: seen.lost >= ATTEMPTS, f"{ATTEMPTS} failed attempts")
        [warning] = bus_lines(caplog, logging.WARNING)
        assert f"Redis at redis://:***@127.0.0.1:{redis_away.port}/0 was lost" in warning
        redis_away.start()
        await until(lambda: bus.connected, "the subscription coming back")
        [info] = bus_lines(caplog, logging.INFO)
        assert "is back" in info
        assert bus.reconnects == 1
        assert PASSWORD not in caplog.text
    finally:
        await bus.close()
        await redis.close()


@pytest.mark.postgres
async def test_an_unreachable_postgresql_listen_is_logged_once_and_its_return_once(
    fresh_pg_url: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(fresh_pg_url)
    link = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    link.cut()
    # PostgreSQL here trusts local connections: the password is only there to be kept out of the logs.
    through = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{PASSWORD}@127.0.0.1:{link.port}"))
    storage: SqlStorage = await open_storage(fresh_pg_url, clock)
    bus = PostgresChangeBus(through, storage.driver, clock=clock)
    try:
        await fail_then_come_back(bus, clock, caplog, f"PostgreSQL at {_masked(through)}", link.restore)
    finally:
        await bus.close()
        await storage.close()
        link.close()


def _masked(url: str) -> str:
    return url.replace(f":{PASSWORD}@", ":***@")
