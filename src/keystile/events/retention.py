"""Retention of verification events (SPEC O3, X3): raw events for ``KEYSTILE_EVENTS_RETENTION_DAYS`` (30),
hourly and daily rollups for ``KEYSTILE_ROLLUPS_RETENTION_DAYS`` (400), minute rollups as long as raw events.

A pass runs at start and then every hour in each server process; it is safe with several processes (on
PostgreSQL one of them drops the day partitions while the others skip, on SQLite deleting what is already gone
deletes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from keystile.core.clock import Clock, now_ms
from keystile.core.ports import Pruned, Storage
from keystile.errors import StorageError

log = logging.getLogger("keystile.events")

INTERVAL_S = 3600.0
DAY_MS = 86_400_000


class Retention:
    """Removes events and rollups past their retention: :meth:`run_once` now, or periodically once started."""

    def __init__(
        self, storage: Storage, clock: Clock, *, raw_days: int, rollup_days: int, interval_s: float = INTERVAL_S
    ) -> None:
        self._storage = storage
        self._clock = clock
        self.raw_days = raw_days
        self.rollup_days = rollup_days
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.runs = self.errors = 0
        self.last: Pruned | None = None

    async def run_once(self) -> Pruned:
        """Remove what is past retention at the clock's now; returns what was removed. Raises StorageError."""
        now = now_ms(self._clock)
        pruned = await self._storage.prune_events(now - self.raw_days * DAY_MS, now - self.rollup_days * DAY_MS)
        self.runs += 1
        self.last = pruned
        if pruned.events or pruned.partitions or pruned.rollups:
            log.info(
                "retention removed %d events, %d day partitions and %d rollup rows",
                pruned.events,
                len(pruned.partitions),
                pruned.rollups,
            )
        return pruned

    def start(self) -> None:
        """Run a pass now and then every interval, in the background. Needs a running loop."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="keystile-event-retention")

    async def close(self) -> None:
        """Stop the periodic passes, after the one under way if any (it is not cancelled: a transaction cut
        short by a cancellation could leave SQLite's one connection inside it)."""
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except StorageError as exc:
                self.errors += 1
                log.warning("event retention failed (%s); trying again in an hour", exc)
            except Exception:  # a bug must not end retention for good
                self.errors += 1
                log.exception("event retention failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._stop.wait()
