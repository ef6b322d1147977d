"""Rate limits (SPEC L1) with GCRA, the generic cell rate algorithm: a token bucket kept as one number.

A limit of ``limit`` requests per ``duration_ms`` lets an idle client make exactly ``limit`` requests of cost 1
at once, rejects the next, and then gives capacity back at ``limit`` per ``duration_ms`` (never fixed windows,
which let twice the limit through across a window boundary). The state of a bucket is its TAT, the
"theoretical arrival time": the moment at which the bucket would be full again. With the emission interval
``T = duration_ms / limit``, a request of cost ``c`` at ``now`` moves the TAT to ``max(tat, now) + c*T`` and is
allowed when that is at most ``duration_ms`` ahead of ``now``.

Arithmetic is in whole microseconds so that it is exact, here and in a Redis script (Lua numbers are doubles:
integers up to 2**53, about 285 years of microseconds, are exact). ``T`` is rounded up to a whole microsecond and
the burst capacity is ``limit * T``, so an idle bucket admits exactly ``limit`` requests however ``T`` rounds;
capacity then comes back at most one microsecond per request slower than ``limit`` per ``duration_ms``.

The same arithmetic runs in process (:class:`MemoryRateLimiter`) and, for many instances, in a Redis script;
both are tested against these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit to apply to one request: the bucket's storage ``key`` and the request's ``cost``."""

    key: str
    name: str
    limit: int
    duration_ms: int
    cost: int = 1

    @property
    def interval(self) -> int:
        """``T`` in microseconds: the time one unit of cost takes to come back."""
        return max(1, -(-self.duration_ms * 1000 // self.limit))

    @property
    def capacity(self) -> int:
        """How far ahead of now (microseconds) the TAT may run: ``limit`` units."""
        return self.limit * self.interval


@dataclass(frozen=True, slots=True)
class LimitState:
    """What a caller learns about one limit after a request (SPEC V1 ``ratelimits``)."""

    name: str
    limit: int
    remaining: int
    reset_at: float
    """When the bucket is full again (epoch milliseconds)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of applying several buckets all-or-nothing."""

    allowed: bool
    states: tuple[LimitState, ...]
    tats: tuple[int, ...]
    """The new TATs to store, in microseconds (the unchanged ones when refused)."""
    retry_after_ms: float = 0.0


def micros(now_ms: float) -> int:
    """Epoch milliseconds (as clocks give them) to whole microseconds."""
    return int(now_ms * 1000)


def step(tat: int | None, now: int, bucket: Bucket) -> tuple[bool, int]:
    """Apply one bucket at ``now`` (microseconds): ``(allowed, new_tat)``; store ``new_tat`` only if every bucket
    of the request is allowed."""
    base = now if tat is None or tat < now else tat
    new_tat = base + bucket.cost * bucket.interval
    return new_tat - now <= bucket.capacity, new_tat


def state(tat: int | None, now: int, bucket: Bucket) -> LimitState:
    """The remaining capacity of a bucket whose TAT is ``tat`` (microseconds)."""
    if tat is None or tat < now:
        tat = now
    remaining = max(0, min(bucket.limit, (bucket.capacity - (tat - now)) // bucket.interval))
    return LimitState(bucket.name, bucket.limit, remaining, tat / 1000)


def decide(tats: Sequence[int | None], now: int, buckets: Sequence[Bucket]) -> Decision:
    """Apply every bucket or none at ``now`` (microseconds): SPEC L1, several limits are all-or-nothing."""
    stepped = [step(tat, now, bucket) for tat, bucket in zip(tats, buckets, strict=True)]
    if all(allowed for allowed, _ in stepped):
        new = tuple(new_tat for _, new_tat in stepped)
        return Decision(True, tuple(state(t, now, b) for t, b in zip(new, buckets, strict=True)), new)
    old = tuple(t if t is not None and t >= now else now for t in tats)
    retry = max(new_tat - b.capacity - now for (_, new_tat), b in zip(stepped, buckets, strict=True))
    states = tuple(state(t, now, b) for t, b in zip(old, buckets, strict=True))
    return Decision(False, states, old, max(0, retry) / 1000)


def refund(tat: int, now: int, bucket: Bucket) -> int:
    """Give a request's cost back (when a later check refused the request it was spent for)."""
    return max(now, tat - bucket.cost * bucket.interval)


class MemoryRateLimiter:
    """Buckets in this process's memory: exact within the process (SPEC L2's default backend).

    Bounded: when it holds more than ``max_buckets``, buckets that are full again (and so carry no state) are
    dropped, then the oldest ones.
    """

    def __init__(self, max_buckets: int = 1_000_000) -> None:
        self._tats: dict[str, int] = {}
        self._max = max_buckets

    def apply(self, buckets: Sequence[Bucket], now_ms: float) -> Decision:
        """Spend ``buckets`` at ``now_ms`` (epoch milliseconds), all or nothing."""
        now = micros(now_ms)
        tats = [self._tats.get(bucket.key) for bucket in buckets]
        decision = decide(tats, now, buckets)
        if decision.allowed:
            for bucket, tat in zip(buckets, decision.tats, strict=True):
                self._tats[bucket.key] = tat
            if len(self._tats) > self._max:
                self._shrink(now)
        return decision

    def refund(self, buckets: Sequence[Bucket], now_ms: float) -> None:
        now = micros(now_ms)
        for bucket in buckets:
            tat = self._tats.get(bucket.key)
            if tat is not None:
                self._tats[bucket.key] = refund(tat, now, bucket)

    def peek(self, bucket: Bucket, now_ms: float) -> LimitState:
        return state(self._tats.get(bucket.key), micros(now_ms), bucket)

    def _shrink(self, now: int) -> None:
        for key in [key for key, tat in self._tats.items() if tat <= now]:
            del self._tats[key]
        while len(self._tats) > self._max:
            del self._tats[next(iter(self._tats))]

    def __len__(self) -> int:
        return len(self._tats)
