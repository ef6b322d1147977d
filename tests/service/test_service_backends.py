"""What Keystile.open wires from the settings (SPEC L2, V6): Redis when a URL is given, else PostgreSQL
notifications on PostgreSQL, else this process only."""

from __future__ import annotations

from pathlib import Path

import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.ports import LocalChangeBus
from keystile.limits.local import LocalSpender
from keystile.limits.redis import RedisSpender
from keystile.notify.postgresql import PostgresChangeBus
from keystile.notify.redis import RedisChangeBus
from keystile.service import Keystile


async def test_a_redis_url_brings_redis_limits_and_the_redis_bus(
    redis_url: str, prefix: str, tmp_path: Path, clock: ManualClock
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}", redis_url=redis_url, redis_prefix=prefix)
    ks = await Keystile.open(settings, clock)
    try:
        assert isinstance(ks.ctx.verifier.spender, RedisSpender)
        assert ks.ctx.verifier.spender.writeback is None, "credits stay in the database by default"
        assert isinstance(ks.ctx.bus, RedisChangeBus)
        assert ks.ctx.bus.connected
    finally:
        await ks.close()


@pytest.mark.postgres
async def test_postgresql_without_redis_brings_listen_notify(fresh_pg_url: str, clock: ManualClock) -> None:
    ks = await Keystile.open(Settings(database_url=fresh_pg_url), clock)
    try:
        assert isinstance(ks.ctx.verifier.spender, LocalSpender)
        assert isinstance(ks.ctx.bus, PostgresChangeBus)
        assert ks.ctx.bus.connected
    finally:
        await ks.close()


async def test_sqlite_without_redis_stays_in_this_process(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    ks = await Keystile.open(Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}", credits_mode="redis"), clock)
    try:
        assert isinstance(ks.ctx.verifier.spender, LocalSpender)
        assert isinstance(ks.ctx.bus, LocalChangeBus)
        assert "needs KEYSTILE_REDIS_URL" in caplog.text
    finally:
        await ks.close()


async def test_an_unreachable_redis_does_not_keep_keystile_from_opening(tmp_path: Path, clock: ManualClock) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}", redis_url="redis://127.0.0.1:1/0")
    ks = await Keystile.open(settings, clock)
    try:
        assert isinstance(ks.ctx.bus, RedisChangeBus)
        assert not ks.ctx.bus.connected
    finally:
        await ks.close()
