"""Rate limits in this process's memory and credits in the database: the default spender."""

from __future__ import annotations

from keystile.core.credits import last_refill_moment
from keystile.core.models import Credits
from keystile.core.ports import Outcome, Spend, Storage
from keystile.core.ratelimit import Decision, MemoryRateLimiter
from keystile.core.verify import Code


def refill_of(credits: Credits, now_ms: int) -> tuple[int, int] | None:
    """``(amount, moment)`` of the refill to apply if the balance was last filled before ``moment``."""
    if credits.refill is None:
        return None
    return credits.refill.amount, last_refill_moment(credits.refill, now_ms)


async def spend_credits(storage: Storage, credits: Credits, cost: int, now_ms: float) -> tuple[bool, int]:
    """Spend from a balance in the database; a balance deleted meanwhile counts as exhausted."""
    now = int(now_ms)
    answer = await storage.spend_credits(credits.id, cost, now, refill_of(credits, now))
    return answer if answer is not None else (False, 0)


class LocalSpender:
    """Spends rate-limit capacity in memory (exact within this process) and credits in the database."""

    def __init__(self, storage: Storage, limiter: MemoryRateLimiter | None = None) -> None:
        self._storage = storage
        self.limiter = limiter or MemoryRateLimiter()

    def spend_now(self, spend: Spend, now_ms: float) -> Outcome | None:
        if spend.credits is not None:
            return None  # credits live in the database: await spend()
        decision = self.limiter.apply(spend.buckets, now_ms)
        return Outcome(Code.VALID if decision.allowed else Code.RATE_LIMITED, decision.states, None)

    async def spend(self, spend: Spend, now_ms: float) -> Outcome:
        decision = self.limiter.apply(spend.buckets, now_ms) if spend.buckets else _NOTHING
        if not decision.allowed:
            return Outcome(Code.RATE_LIMITED, decision.states, _reported(spend))
        if spend.credits is None:
            return Outcome(Code.VALID, decision.states, None)
        spent, remaining = await spend_credits(self._storage, spend.credits, spend.cost, now_ms)
        if spent:
            return Outcome(Code.VALID, decision.states, remaining)
        # A refused request spends nothing (SPEC V2): give the rate-limit capacity back.
        self.limiter.refund(spend.buckets, now_ms)
        states = tuple(self.limiter.peek(bucket, now_ms) for bucket in spend.buckets)
        return Outcome(Code.USAGE_EXCEEDED, states, remaining)


_NOTHING = Decision(True, (), ())


def _reported(spend: Spend) -> int | None:
    """Credits as last seen, for an answer that never reached the balance (it was rate limited first)."""
    return spend.credits.remaining if spend.credits is not None else None
