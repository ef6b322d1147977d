"""``credits.low`` and ``credits.exhausted`` (SPEC R5), found where credits are spent, off the hot path.

Verification calls :meth:`CreditsWatch.saw` with the balance a spend returned, only while some endpoint wants
these events. It decides in a few comparisons whether this spend crossed a threshold (the balance reached 0, or
fell to an endpoint's ``credits_low_percent`` of the balance's last set or refilled amount) and, only then,
appends a small tuple to an in-memory queue; the deliverer's background pass writes the outbox rows. A balance
decreases one atomic spend at a time, so exactly one spend crosses each threshold, in whichever process made it:
each crossing is reported once (until a refill or a new amount lets it cross again). The thresholds of a balance
are loaded off the hot path the first time it is seen (its spends until then are queued and judged there), and
dropped when the balance is written. What is still queued when a process is killed is lost (the events of key
changes, written with the change, are not).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

from keystile.core.models import Credits, Key
from keystile.core.ports import Change
from keystile.core.verify import CachedKey
from keystile.core.webhooks import Endpoint
from keystile.service import outbox
from keystile.service.context import Context

log = logging.getLogger("keystile.webhooks")

QUEUE_LIMIT = 100_000
REFRESH_MS = 5_000
_EVENTS = ("credits.low", "credits.exhausted")


class CreditsWatch:
    """Spends that crossed a credits threshold, queued for the outbox."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.active = False
        """Whether some enabled endpoint wants credits events (else verification does not call :meth:`saw`)."""
        self._percents: tuple[int, ...] = ()
        self._thresholds: dict[str, tuple[int, ...]] = {}
        self._queue: deque[tuple[Key, Credits, int, int]] = deque(maxlen=QUEUE_LIMIT)
        self._refreshed = -REFRESH_MS
        ctx.bus.subscribe(self._changed)

    # -- on the hot path ------------------------------------------------------------------------------------

    def saw(self, entry: CachedKey, credits: Credits, remaining: int, cost: int) -> None:
        """A verification of ``entry``'s key spent ``cost`` from ``credits``, leaving ``remaining``. The key record
        is decoded from the cache entry only when a crossing is queued (most spends cross nothing)."""
        if cost <= 0:
            return
        thresholds = self._thresholds.get(credits.id)
        if thresholds is None or remaining == 0:
            self._queue.append((entry.key, credits, remaining, cost))
            return
        for threshold in thresholds:
            if remaining <= threshold < remaining + cost:
                self._queue.append((entry.key, credits, remaining, cost))
                return

    # -- off it ---------------------------------------------------------------------------------------------

    def _changed(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.kind == "credits":
                self._thresholds.pop(change.ref, None)
            elif change.kind in ("all", "lost"):
                self._thresholds.clear()

    async def refresh(self) -> None:
        """Look again (every few seconds) which thresholds the enabled endpoints ask for."""
        now = self._ctx.now()
        if now - self._refreshed < REFRESH_MS:
            return
        self._refreshed = now
        endpoints = await self._ctx.storage.list_webhooks(after=None, limit=10_000)
        targets = [ep for ep in endpoints if ep.enabled and any(e in ep.events for e in _EVENTS)]
        percents = tuple(sorted({ep.credits_low_percent for ep in targets if "credits.low" in ep.events}))
        if percents != self._percents:
            self._thresholds.clear()
            self._percents = percents
        self.active = bool(targets)

    async def _thresholds_of(self, credit_id: str, base: int | None) -> None:
        if credit_id not in self._thresholds:
            self._thresholds[credit_id] = () if not base else tuple(sorted({base * p // 100 for p in self._percents}))

    async def flush(self) -> int:
        """Refresh, then write the queued crossings to the outbox; returns the events written."""
        await self.refresh()
        if not self._queue:
            return 0
        items = list(self._queue)
        self._queue.clear()
        written = 0
        bases: dict[str, int | None] = {}
        for _, credits, _, _ in items:
            if credits.id not in bases:
                bases[credits.id] = await self._ctx.storage.credit_base(credits.id)
                await self._thresholds_of(credits.id, bases[credits.id])
        async with self._ctx.storage.transaction() as tx:
            for key, credits, remaining, cost in items:
                now = self._ctx.now()
                shown = replace(key, credits=replace(credits, remaining=remaining))
                base = bases[credits.id]
                for percent in self._percents:
                    threshold = (base or 0) * percent // 100
                    if base and remaining <= threshold < remaining + cost:
                        extra = {"threshold": threshold, "credits_low_percent": percent}
                        sent = await outbox.emit(tx, "credits.low", shown, now, extra, only=_with_percent(percent))
                        written += sent is not None
                if remaining == 0:
                    written += await outbox.emit(tx, "credits.exhausted", shown, now) is not None
        return written


def _with_percent(percent: int) -> Callable[[Endpoint], bool]:
    """Endpoints whose ``credits.low`` threshold is ``percent``."""
    return lambda endpoint: endpoint.credits_low_percent == percent
