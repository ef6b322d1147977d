"""Credits spent in Redis go back to the database every second (SPEC L3, ``credits_mode=redis``).

Redis keeps, per balance, the credits spent since the last write-back and the refill period they belong to
(``spend.lua``; the scripts are in ``keystile/redis/lua/``). A write-back takes those (``take.lua``, atomic, so a
balance is taken by one instance at a time even when every instance writes back), subtracts them in the database
in one transaction, and reports the result (``settle.lua``): on a database failure the spends go back to their
counters and are written back later, so nothing is lost while the database is away.

The database applies a period's spends only if it has not refilled since (then they are moot) and applies a
refill Redis did before them: the same balance whichever instance, Redis or database, refilled it first.

What can be lost: the spends taken from Redis but not yet in the database when a process dies, and those not
yet taken when Redis loses its data. Either is at most one interval's worth (one second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from keystile.core.ports import CreditDelta, Storage
from keystile.errors import StorageError
from keystile.redis.connection import RedisConnection, RedisUnavailable
from keystile.redis.scripts import Script

log = logging.getLogger("keystile.limits")

INTERVAL_S = 1.0
BATCH = 500
COUNTER_TTL_MS = 7 * 86_400_000
"""An idle counter vanishes after a week (its balance lives on in the database); each write-back of its spends
renews that."""


class WriteBack:
    """Writes spent credits back from Redis to the database: every :data:`INTERVAL_S` once started, and on
    :meth:`flush`."""

    def __init__(self, redis: RedisConnection, storage: Storage, interval_s: float = INTERVAL_S) -> None:
        self._redis = redis
        self._storage = storage
        self._interval = interval_s
        self._take = Script("take")
        self._settle = Script("settle")
        self._dirty = redis.key("credits:dirty")
        self._prefix = redis.key("c:")
        # Spends taken from Redis that neither the database nor Redis could take back: retried first.
        self._held: list[CreditDelta] = []
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rounds = self.written = self.errors = 0

    @property
    def stats(self) -> dict[str, int]:
        """Write-backs that wrote something, credits written back, and failed attempts."""
        return {"writebacks": self.rounds, "credits_written_back": self.written, "writeback_errors": self.errors}

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="keystile-credits-writeback")

    async def close(self) -> None:
        """Stop the background write-back, then write back what is left."""
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)
            try:
                await self.flush()
            except Exception:  # a bug must not end the write-back for good
                self.errors += 1
                log.exception("credits write-back failed")

    async def flush(self) -> int:
        """Write every pending spend back now; returns the credits written. Failures are counted and retried
        by the next write-back, never raised."""
        async with self._lock:
            written = 0
            if self._held:
                if not await self._write(self._held):
                    return 0
                written += sum(delta.spent for delta in self._held)
                self._held = []
            while True:
                try:
                    reply = await self._redis.call(self._take, [self._dirty], [self._prefix, BATCH, COUNTER_TTL_MS])
                except RedisUnavailable:
                    self.errors += 1
                    return written
                deltas = _deltas(reply)
                if not deltas:
                    return written
                ok = await self._write(deltas)
                try:
                    await self._redis.call(self._settle, [self._dirty], [self._prefix, 1 if ok else 0, *reply])
                except RedisUnavailable:
                    self.errors += 1
                    if not ok:
                        self._held = deltas  # neither side took them back: keep them for the database
                    return written
                if not ok:
                    return written
                written += sum(delta.spent for delta in deltas)
                if len(deltas) < BATCH:
                    return written

    async def _write(self, deltas: list[CreditDelta]) -> bool:
        try:
            await self._storage.write_back_credits(deltas)
        except StorageError as exc:
            self.errors += 1
            log.warning("credits write-back: the database failed (%s); retrying", exc.detail)
            return False
        self.rounds += 1
        self.written += sum(delta.spent for delta in deltas)
        return True


def _deltas(reply: list[Any]) -> list[CreditDelta]:
    deltas = []
    for i in range(0, len(reply), 4):
        credit_id = reply[i].decode() if isinstance(reply[i], bytes) else str(reply[i])
        epoch, refill = int(reply[i + 2]), int(reply[i + 3])
        deltas.append(
            CreditDelta(credit_id, int(reply[i + 1]), None if epoch < 0 else epoch, None if refill < 0 else refill)
        )
    return deltas
