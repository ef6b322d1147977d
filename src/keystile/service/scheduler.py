"""The scheduler of time-driven webhook events (SPEC R5, R3): ``key.expiring`` (7 days and 1 day before),
``key.expired`` and ``key.rotation_due``.

Each server runs it, but a scan needs the lease (a row with an owner and an expiry, taken in the scan's
transaction), so one server scans at a time; and each notice is claimed once per key (a unique row written in
the transaction of its outbox row), so that none is sent twice even if two scans overlap. A scan never reads
every key: it keeps watermarks of how far it has looked, and reads through indexes only the keys whose moment
(expiry minus 7 days, minus 1 day, expiry, creation plus the API's ``max_key_age_days``) came since the last
scan, plus the keys written since then whose expiry is already within a week (a key created to expire in three
days hears of it at once).
"""

from __future__ import annotations

import secrets

from keystile.core.models import Key
from keystile.core.ports import Transaction
from keystile.service import outbox
from keystile.service.context import Context

DAY_MS = 86_400_000
BATCH = 1000
_NOTICES = (("expiring_7d", 7 * DAY_MS), ("expiring_1d", DAY_MS))


class Scheduler:
    """Finds the keys whose time-driven event is due and writes it to the outbox, once each."""

    def __init__(self, ctx: Context, interval_ms: int) -> None:
        self._ctx = ctx
        self._interval = interval_ms
        self.owner = "sch_" + secrets.token_hex(8)
        self._next = 0
        self.sent = 0
        self._wanted: set[str] = set()

    async def run_due(self) -> int:
        """Scan when the interval has passed since the last scan; returns the events written."""
        now = self._ctx.now()
        if now < self._next:
            return 0
        self._next = now + self._interval
        return await self.scan()

    async def scan(self) -> int:
        """One scan now, if this process gets the lease; returns the events written. Raises StorageError."""
        now = self._ctx.now()
        sent = 0
        async with self._ctx.storage.transaction() as tx:
            if not await tx.take_schedule_lease(self.owner, now, now + 2 * self._interval):
                return 0
            # Nothing is claimed for an event no endpoint wants (the watermarks move on all the same).
            self._wanted = {event for ep in await tx.webhook_targets() for event in ep.events}
            for notice, ahead in _NOTICES:
                sent += await self._window(tx, notice, ahead, now)
            sent += await self._window(tx, "expired", 0, now)
            sent += await self._written_since(tx, now)
            sent += await self._rotation_due(tx, now)
        self.sent += sent
        return sent

    async def _notify(self, tx: Transaction, key: Key, notice: str, now: int) -> int:
        if key.expires_at is None and notice != "rotation_due":
            return 0
        event = {"expired": "key.expired", "rotation_due": "key.rotation_due"}.get(notice, "key.expiring")
        if event not in self._wanted:
            return 0
        claim = notice if notice == "rotation_due" else f"{notice}:{key.expires_at}"
        if not await tx.claim_notice(key.id, claim, now):
            return 0
        if notice == "expired":
            return 1 if await outbox.emit(tx, "key.expired", key, now) else 0
        if notice == "rotation_due":
            return 1 if await outbox.emit(tx, "key.rotation_due", key, now) else 0
        days = 7 if notice == "expiring_7d" else 1
        return 1 if await outbox.emit(tx, "key.expiring", key, now, {"expires_in_days": days}) else 0

    def _notice_for(self, key: Key, now: int) -> str | None:
        """Which expiry notice is due for a key now (the nearest), if any."""
        if key.expires_at is None:
            return None
        left = key.expires_at - now
        if left <= 0:
            return "expired"
        if left <= DAY_MS:
            return "expiring_1d"
        if left <= 7 * DAY_MS:
            return "expiring_7d"
        return None

    async def _window(self, tx: Transaction, notice: str, ahead: int, now: int) -> int:
        """Keys whose expiry came within ``ahead`` of now since the last scan."""
        name = f"window:{notice}"
        start = await tx.schedule_watermark(name)
        horizon = now + ahead
        after = horizon if start is None else start  # a first scan starts now: what came before was not watched
        sent = 0
        while after < horizon:
            keys = await tx.keys_expiring(after, horizon, BATCH)
            for key in keys:
                if self._notice_for(key, now) == notice:
                    sent += await self._notify(tx, key, notice, now)
            after = horizon if len(keys) < BATCH else max(after + 1, (keys[-1].expires_at or horizon) - 1)
        await tx.set_schedule_watermark(name, horizon)
        return sent

    async def _written_since(self, tx: Transaction, now: int) -> int:
        """Keys created or changed since the last scan whose expiry is already near (their window has passed)."""
        name = "written"
        start = await tx.schedule_watermark(name)
        sent = 0
        if start is not None:
            for key in await tx.keys_written(start, now, 7 * DAY_MS):
                notice = self._notice_for(key, now)
                if notice is not None:
                    sent += await self._notify(tx, key, notice, now)
        await tx.set_schedule_watermark(name, now)
        return sent

    async def _rotation_due(self, tx: Transaction, now: int) -> int:
        """Keys older than their API's ``max_key_age_days`` since the last scan (SPEC R3)."""
        sent = 0
        for api in await self._ctx.storage.list_apis(after=None, limit=10_000, only=None):
            if api.max_key_age_days is None:
                continue
            cutoff = now - api.max_key_age_days * DAY_MS
            name = f"rotation:{api.id}"
            after = await tx.schedule_watermark(name) or 0
            while after < cutoff:
                keys = await tx.keys_created(api.id, after, cutoff, BATCH)
                for key in keys:
                    sent += await self._notify(tx, key, "rotation_due", now)
                after = cutoff if len(keys) < BATCH else max(after + 1, keys[-1].created_at - 1)
            await tx.set_schedule_watermark(name, cutoff)
        return sent
