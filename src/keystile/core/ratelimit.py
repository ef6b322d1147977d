"""Rate limits (SPEC L1) with GCRA, the generic cell rate algorithm: a token bucket kept as one number.

A limit of ``limit`` requests per ``duration_ms`` lets an idle client make exactly ``limit`` requests of cost 1
at once, rejects the next, and then gives capacity back at ``limit`` per ``duration_ms`` (never fixed windows,
which let twice the limit through across a window boundary). The state of a bucket is its TAT, the
"theoretical arrival time": the moment at which the bucket would be full again. With the emission interval
``T = duration_ms / limit``, a request of cost ``c`` at ``now`` moves the TAT to ``max(tat, now) + c*T`` and is
allowed when that is at most ``duration_ms`` ahead of ``now``.

The same arithmetic runs in process (:class:`MemoryRateLimiter`) and, for many instances, in a Redis script
(``keystile/limits/lua/``); both are tested against these functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Times are float milliseconds; a hair of tolerance keeps "exactly N at once" exact when T = D/N is not.
EPSILON_MS = 1e-6


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit to apply to one request: the bucket's storage ``key`` and the request's ``cost``."""

    key: str
    name: str
    limit: int
    duration_ms: int
    cost: int = 1

    @property
    def interval(self) -> float:
        return self.duration_ms / self.limit


@dataclass(frozen=True, slots=True)
class LimitState:
    """What a caller learns about one limit after a request (SPEC V1 ``ratelimits``)."""

    name: str
    limit: int
    remaining: int
    reset_at: float
    """When the bucket is full again (epoch ms)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of applying several buckets all-or-nothing."""

    allowed: bool
    states: tuple[LimitState, ...]
    tats: tuple[float, ...]
    """The new TATs to store (unchanged ones when refused)."""
    retry_after_ms: float = 0.0


def step(tat: float | None, now: float, bucket: Bucket) -> tuple[bool, float]:
    """Apply one bucket: ``(allowed, new_tat)``; the caller stores ``new_tat`` only if everything is allowed."""
    base = now if tat is None or tat < now else tat
    new_tat = base + bucket.cost * bucket.interval
    return new_tat - now <= bucket.duration_ms + EPSILON_MS, new_tat


def state(tat: float | None, now: float, bucket: Bucket) -> LimitState:
    """The remaining capacity of a bucket whose TAT is ``tat``."""
    if tat is None or tat < now:
        tat = now
    room = bucket.duration_ms - (tat - now)
    remaining = max(0, min(bucket.limit, math.floor(room / bucket.interval + EPSILON_MS)))
    return LimitState(bucket.name, bucket.limit, remaining, tat)


def decide(tats: Sequence[float | None], now: float, buckets: Sequence[Bucket]) -> Decision:
    """Apply every bucket or none (SPEC L1: several limits on one key are checked all-or-nothing)."""
    stepped = [step(tat, now, bucket) for tat, bucket in zip(tats, buckets, strict=True)]
    if all(allowed for allowed, _ in stepped):
        new = tuple(new_tat for _, new_tat in stepped)
        return Decision(True, tuple(state(t, now, b) for t, b in zip(new, buckets, strict=True)), new)
    old = tuple(t if t is not None and t >= now else now for t in tats)
    retry = max(new_tat - b.duration_ms - now for (_, new_tat), b in zip(stepped, buckets, strict=True))
    states = tuple(state(t, now, b) for t, b in zip(old, buckets, strict=True))
    return Decision(False, states, old, max(0.0, retry))


def refund(tat: float, now: float, bucket: Bucket) -> float:
    """Give a request's cost back (when a later check refused the request it was spent for)."""
    return max(now, tat - bucket.cost * bucket.interval)


class MemoryRateLimiter:
    """Buckets in this process's memory: exact within the process (SPEC L2's default backend).

    Bounded: when it holds more than ``max_buckets``, buckets that are full again (and so carry no state) are
    dropped, then the oldest ones.
    """

    def __init__(self, max_buckets: int = 1_000_000) -> None:
        self._tats: dict[str, float] = {}
        self._max = max_buckets

    def apply(self, buckets: Sequence[Bucket], now: float) -> Decision:
        tats = [self._tats.get(bucket.key) for bucket in buckets]
        decision = decide(tats, now, buckets)
        if decision.allowed:
            for bucket, tat in zip(buckets, decision.tats, strict=True):
                self._tats[bucket.key] = tat
            if len(self._tats) > self._max:
                self._shrink(now)
        return decision

    def refund(self, buckets: Sequence[Bucket], now: float) -> None:
        for bucket in buckets:
            tat = self._tats.get(bucket.key)
            if tat is not None:
                self._tats[bucket.key] = refund(tat, now, bucket)

    def peek(self, bucket: Bucket, now: float) -> LimitState:
        return state(self._tats.get(bucket.key), now, bucket)

    def _shrink(self, now: float) -> None:
        for key in [key for key, tat in self._tats.items() if tat <= now]:
            del self._tats[key]
        while len(self._tats) > self._max:
            del self._tats[next(iter(self._tats))]

    def __len__(self) -> int:
        return len(self._tats)
