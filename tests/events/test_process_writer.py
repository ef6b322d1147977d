"""The event writer in a child process (SPEC O1, P2, P6): the serving process hands records over, a real
``python -m keystile.cli.eventwriter`` converts and writes them to the same SQLite file or PostgreSQL database.

It keeps the in-process writer's promises: what is recorded is written once, in order, with ``/metrics`` counts;
``flush`` waits for the child; a child killed with SIGKILL is replaced and what it held is sent again; a database
outage raises from ``flush``, keeps everything buffered, and loses nothing once it is back; ``close`` writes what
is left and the child exits."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from keystile.config import Settings
from keystile.errors import StorageError
from keystile.events import EventRecorder, EventWriter, ProcessEventWriter
from keystile.events.process import SQLITE_FRAME_EVENTS
from keystile.service import Keystile
from tests.tcp_proxy import TcpProxy, through

from .conftest import World
from .test_writer import recorder_of, traffic


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The backends a child process can reach (not memory://, where servers write inline)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keystile.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
def child_url(database_url: str) -> str:
    return database_url


def writer_for(world: World, url: str, batch_size: int = 4) -> ProcessEventWriter:
    return ProcessEventWriter(
        world.ks.storage, recorder_of(world), world.clock, url=url, timeout_s=2.0, batch_size=batch_size
    )


def child_of(writer: ProcessEventWriter) -> int | None:
    """The writer's child pid, read afresh."""
    return writer.pid


def exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as exited.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


async def test_the_child_writes_what_is_recorded_once_and_in_order(world: World, child_url: str) -> None:
    recorder = recorder_of(world)
    writer = writer_for(world, child_url)
    outcomes = await traffic(world, 10)
    try:
        assert await writer.flush() == 10
        pid = writer.pid
        assert pid is not None
        assert pid != os.getpid()
        assert (writer.stats.batches, writer.stats.written, writer.stats.write_errors, len(recorder)) == (3, 10, 0, 0)
        assert writer.stats.last_flush_ms > 0

        stored = await world.stored()
        assert [e.request_id for e in stored] == [f"req_{n}" for n in reversed(range(10))]
        assert [e.outcome for e in reversed(stored)] == outcomes
        # Counted for /metrics in this process, before the records left it.
        assert sum(writer.count_recorded().by_outcome.values()) == 10

        # Ctrl-C or a service manager's stop reach the whole process group: the child waits for its server.
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        outcomes += await traffic(world, 3, start=10)
        assert await writer.flush() == 3
        assert writer.pid == pid
        assert Counter(e.outcome for e in await world.stored()) == Counter(outcomes)
    finally:
        await writer.close()
    assert child_of(writer) is None
    assert exited(pid)


async def test_close_writes_what_is_left_and_the_child_exits(world: World, child_url: str) -> None:
    recorder = recorder_of(world)
    writer = writer_for(world, child_url, batch_size=100)
    writer.start()
    await traffic(world, 7)
    await asyncio.sleep(0.2)
    await writer.close()
    assert len(recorder) == 0
    assert sorted(str(e.request_id) for e in await world.stored()) == sorted(f"req_{n}" for n in range(7))


async def test_in_the_background_batches_go_without_a_flush(world: World, child_url: str) -> None:
    writer = ProcessEventWriter(
        world.ks.storage, recorder_of(world), world.clock, url=child_url, timeout_s=2.0, interval_s=0.05
    )
    writer.start()
    try:
        await traffic(world, 5)
        for _ in range(200):
            if writer.stats.written == 5:
                break
            await asyncio.sleep(0.05)
        assert writer.stats.written == 5
        assert len(await world.stored()) == 5
    finally:
        await writer.close()


async def test_a_frame_of_new_events_leaves_at_once_with_sqlite_and_waits_for_a_batch_with_postgresql(
    world: World, child_url: str
) -> None:
    # SQLite: frames leave as they fill (P2's p99: a batch's worth sent at once, then written in one transaction,
    # doubled it), though the batch and the interval are far off. PostgreSQL waits for a batch's worth.
    writer = ProcessEventWriter(
        world.ks.storage, recorder_of(world), world.clock, url=child_url, timeout_s=2.0, interval_s=3600
    )
    sqlite = child_url.startswith("sqlite:")
    writer.start()
    try:
        await traffic(world, SQLITE_FRAME_EVENTS + 3)
        for _ in range(200 if sqlite else 10):
            if writer.stats.written == SQLITE_FRAME_EVENTS + 3:
                break
            await asyncio.sleep(0.05)
        # Woken by a frame's worth, the sender sends what is buffered then: all of it, no flush called.
        assert writer.stats.written == (SQLITE_FRAME_EVENTS + 3 if sqlite else 0)
        assert len(await world.stored()) == writer.stats.written
    finally:
        await writer.close()
    assert len(await world.stored()) == SQLITE_FRAME_EVENTS + 3


async def test_a_killed_child_is_replaced_and_nothing_is_lost(world: World, child_url: str) -> None:
    recorder = recorder_of(world)
    writer = writer_for(world, child_url)
    try:
        await traffic(world, 6)
        assert await writer.flush() == 6
        first = writer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await traffic(world, 5, start=6)  # recorded while the child is dead

        written = 0
        errors: list[str] = []
        for _ in range(3):  # the first flush may notice the death only when it is waiting on the child
            try:
                written = await writer.flush()
                break
            except StorageError as exc:
                errors.append(str(exc))
        assert written == 5
        assert all("exited" in error for error in errors)
        assert writer.pid not in (None, first)
        assert len(recorder) == 0
        assert sorted(str(e.request_id) for e in await world.stored()) == sorted(f"req_{n}" for n in range(11))
    finally:
        await writer.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_outage_keeps_everything_buffered_and_loses_nothing(
    world: World, child_url: str, pg_proxy: TcpProxy
) -> None:
    recorder = recorder_of(world)
    writer = writer_for(world, through(child_url, pg_proxy))
    try:
        await traffic(world, 4)
        assert await writer.flush() == 4

        pg_proxy.cut()
        await traffic(world, 6, start=4)
        with pytest.raises(StorageError):
            await writer.flush()
        assert len(recorder) == 6
        assert writer.stats.write_errors >= 1
        assert writer.stats.written == 4

        # A child killed while it cannot write: what it held is sent again to the next one.
        held = writer.pid
        assert held is not None
        os.kill(held, signal.SIGKILL)
        await traffic(world, 2, start=10)
        pg_proxy.restore()
        for _ in range(20):
            try:
                await writer.flush()
                break
            except StorageError:
                await asyncio.sleep(0.2)
        assert len(recorder) == 0
        ids = [str(e.request_id) for e in await world.stored()]
        assert sorted(ids) == sorted(f"req_{n}" for n in range(12))  # each once
    finally:
        pg_proxy.restore()
        await writer.close()


async def test_servers_write_from_a_child_unless_inline_and_everything_else_inline(
    settings: Settings, child_url: str
) -> None:
    assert Settings().events_writer == "process"  # the default
    opted = dataclasses.replace(settings, events_writer="process")
    server = await Keystile.open(opted, server=True, retention=False)
    command = await Keystile.open(opted, retention=False)
    inline = await Keystile.open(dataclasses.replace(settings, events_writer="inline"), server=True)
    memory = await Keystile.open(Settings(database_url="memory://", events_writer="process"), server=True)
    try:
        assert type(server.events.writer) is ProcessEventWriter
        for opened in (command, inline, memory):
            assert type(opened.events.writer) is EventWriter
            assert isinstance(opened.events.recorder, EventRecorder)
    finally:
        for opened in (server, command, inline, memory):
            await opened.close()
