"""Rate limits, and optionally credits, in Redis: exact across every instance (SPEC L2, L3).

Each verification that spends is ONE script call (``spend.lua``, in ``keystile/redis/lua/``), atomic on the Redis
server and batched with the other verifications in flight (:class:`~keystile.redis.connection.RedisConnection`).
The script applies every bucket or none; with ``credits_mode=redis`` it also spends from the balance's counter in
the same step, so that a request refused by either spends nothing.

Time: the script reads Redis's clock (``TIME``) instead of taking the caller's. Instances whose clocks disagree
then still agree on every bucket: with a caller's clock, an instance one second ahead would see a
10-per-second bucket as drained one second sooner. (Credit refill moments are daily or monthly, so they use the
caller's clock.)

Credits in Redis (``credits_mode=redis``): a counter per balance, loaded from the database the first time a
script needs it (the script answers LOAD and writes nothing; the caller reads the database and calls again with
what it read, and only the first such call initialises the counter, so two instances never both initialise it).
The credits spent are written back to the database every second (:mod:`keystile.limits.writeback`). If Redis
loses its data, counters are reloaded from the database, and at most the credits spent since the last
write-back (one second's worth) can be spent again; the ``data_losses`` counter counts such losses.

When Redis fails, rate limits follow ``ratelimit_on_redis_failure``: ``open`` hands them to in-process limits
(:class:`~keystile.limits.local.LocalSpender`), ``closed`` answers ``RATE_LIMITED``. Credits never fail open:
both modes then spend them in the database, and a counter spent around that way is reloaded when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from keystile.core.models import Credits
from keystile.core.ports import Change, Outcome, Spend, Storage
from keystile.core.ratelimit import Bucket, LimitState
from keystile.core.verify import Code
from keystile.limits.local import LocalSpender, refill_of, spend_credits
from keystile.limits.writeback import COUNTER_TTL_MS, WriteBack
from keystile.redis.connection import RedisConnection, RedisUnavailable
from keystile.redis.scripts import Script
from keystile.redis.wire import Arg, Part, bulk, encode

log = logging.getLogger("keystile.limits")

_CODES = (Code.VALID, Code.RATE_LIMITED, Code.USAGE_EXCEEDED)
_LOAD = 3
PREPARED_LIMIT = 10_000
"""Spends whose packed script call is kept (see :class:`_Prepared`)."""


class RedisSpender:
    """The Spender port over Redis (see the module docstring). ``stats`` counts what happened since start."""

    def __init__(
        self,
        redis: RedisConnection,
        storage: Storage,
        *,
        on_failure: str = "open",
        credits_in_redis: bool = False,
    ) -> None:
        self._redis = redis
        self._storage = storage
        self._fail_open = on_failure == "open"
        self.credits_in_redis = credits_in_redis
        self.local = LocalSpender(storage)
        self.writeback = WriteBack(redis, storage) if credits_in_redis else None
        self._spend = Script("spend")
        self._refund = Script("refund")
        self._dirty = redis.key("credits:dirty")
        self._sentinel = redis.key("sentinel")
        self._counter_prefix = redis.key("c:")
        # Balances spent in the database while Redis was away, or changed by an API call: their counters may be
        # stale, so the next spend reloads them.
        self._reload: set[str] = set()
        self._seen_sentinel = False
        self._reading: dict[str, asyncio.Future[tuple[tuple[int, int | None] | None, int]]] = {}
        self._prepared: dict[int, _Prepared] = {}
        self.redis_errors = self.local_decisions = self.closed_refusals = self.database_credits = 0
        self.loads = self.data_losses = 0

    @property
    def redis(self) -> RedisConnection:
        """The connection its scripts go through (readiness checks and metrics read it)."""
        return self._redis

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start: Redis errors, verifications decided without Redis (local limits; refused by
        ``closed``; credits spent in the database instead of Redis), counters loaded from the database, and
        Redis data losses seen (each one may re-allow the credits of one write-back interval)."""
        stats = {
            "redis_errors": self.redis_errors,
            "local_decisions": self.local_decisions,
            "closed_refusals": self.closed_refusals,
            "database_credits": self.database_credits,
            "counter_loads": self.loads,
            "data_losses": self.data_losses,
        }
        if self.writeback is not None:
            stats.update(self.writeback.stats)
        return stats

    async def start(self) -> None:
        """Start the credits write-back (in ``redis`` credits mode)."""
        if self.writeback is not None:
            self.writeback.start()

    async def close(self) -> None:
        """Stop the write-back after a last one."""
        if self.writeback is not None:
            await self.writeback.close()

    def apply_changes(self, changes: Sequence[Change]) -> None:
        """A change-bus listener: a balance written by an API call is reloaded by its next spend."""
        for change in changes:
            if change.kind == "credits":
                self._reload.add(change.ref)

    # -- the Spender port -----------------------------------------------------------------------------------

    def spend_now(self, spend: Spend, now_ms: float) -> Outcome | None:
        """Without waiting only while Redis is known to be down and there are no credits to spend."""
        if spend.credits is not None or not self._redis.breaker.down:
            return None
        return self._without_redis_now(spend, now_ms)

    async def spend(self, spend: Spend, now_ms: float) -> Outcome:
        """Spend through Redis, or as ``ratelimit_on_redis_failure`` says when Redis fails.

        Raises :class:`~keystile.errors.StorageError` when credits must be spent and the database fails.
        """
        credits = spend.credits
        if not spend.buckets and (credits is None or not self.credits_in_redis):
            return await self.local.spend(spend, now_ms)  # only database credits: Redis has nothing to do
        try:
            return await self._spend_in_redis(spend, now_ms)
        except RedisUnavailable as exc:
            self.redis_errors += 1
            if not self._redis.breaker.down:  # an outage is logged once, by the connection
                log.warning("Redis failed (%s); spending without it", exc.detail)
        if credits is not None and self.credits_in_redis:
            self._reload.add(credits.id)
            self.database_credits += 1
        return await self._without_redis(spend, now_ms)

    # -- through Redis --------------------------------------------------------------------------------------

    async def _spend_in_redis(self, spend: Spend, now_ms: float) -> Outcome:
        prepared = self._prepared.get(id(spend))
        if prepared is None or prepared.spend is not spend:
            prepared = self._prepare(spend)
        credits = prepared.credits
        submit = self._redis.submit_part
        if credits is None:
            reply = await submit(self._spend, prepared.limits)
            outcome = _outcome(reply, spend)
            if outcome.code == Code.VALID and spend.credits is not None:
                return await self._database_credits(spend, spend.credits, outcome, now_ms)
            return outcome
        reload = credits.id in self._reload if self._reload else False
        reply = await submit(self._spend, prepared.part(now_ms, 1 if reload else 0))
        if reply[0] == _LOAD:
            state, seen = await self._read_balance(credits.id, reply[3])
            if state is None:  # the balance was deleted meanwhile: exhausted, as in the database mode
                return Outcome(Code.USAGE_EXCEEDED, _states(reply, spend.buckets), 0)
            self._check_sentinel(reply[4])
            remaining, refilled_at = state
            load = (COUNTER_TTL_MS, remaining, -1 if refilled_at is None else refilled_at, seen)
            reply = await submit(self._spend, prepared.part(now_ms, 2, load))
            if reply[0] == _LOAD:
                raise RedisUnavailable("the credit counter could not be loaded")
        if reload:
            self._reload.discard(credits.id)
        if reply[4] or not self._seen_sentinel:
            self._check_sentinel(reply[4])
        return _outcome(reply, spend)

    def _prepare(self, spend: Spend) -> _Prepared:
        if len(self._prepared) >= PREPARED_LIMIT:
            self._prepared.clear()  # spends made per request (named limits, standalone limits) do not pile up
        prepared = self._prepared[id(spend)] = _Prepared(self, spend)
        return prepared

    async def _read_balance(self, credit_id: str, seen: int) -> tuple[tuple[int, int | None] | None, int]:
        """The balance as the database has it, and the write-back count seen before reading it. Concurrent
        verifications of one balance share one read (and the count its first reader saw)."""
        pending = self._reading.get(credit_id)
        if pending is None:
            pending = asyncio.ensure_future(self._read(credit_id, seen))
            self._reading[credit_id] = pending
            pending.add_done_callback(lambda _: self._reading.pop(credit_id, None))
        return await asyncio.shield(pending)

    async def _read(self, credit_id: str, seen: int) -> tuple[tuple[int, int | None] | None, int]:
        self.loads += 1
        return await self._storage.credit_state(credit_id), seen

    async def _database_credits(self, spend: Spend, credits: Credits, limited: Outcome, now_ms: float) -> Outcome:
        """``credits_mode=database``: the limits are spent in Redis; now the credits, in the database."""
        spent, remaining = await spend_credits(self._storage, credits, spend.cost, now_ms)
        if spent:
            return Outcome(Code.VALID, limited.ratelimits, remaining)
        # A refused request spends nothing (SPEC V2): give the rate-limit capacity back (a second round trip,
        # on this rare path only).
        keys, args = self._bucket_args(spend.buckets)
        try:
            reply = await self._redis.call(self._refund, keys, args[1:])  # refund.lua takes no bucket count
        except RedisUnavailable:
            self.redis_errors += 1
            return Outcome(Code.USAGE_EXCEEDED, limited.ratelimits, remaining)
        return Outcome(Code.USAGE_EXCEEDED, _states(reply, spend.buckets, first=1), remaining)

    def _bucket_args(self, buckets: Sequence[Bucket]) -> tuple[list[str], list[Arg]]:
        keys = [self._redis.prefix + bucket.key for bucket in buckets]
        args: list[Arg] = [len(buckets)]
        for bucket in buckets:
            args += (bucket.limit, bucket.interval, bucket.cost)
        return keys, args

    def _check_sentinel(self, created: int) -> None:
        """Count a data loss when the script had to recreate the sentinel this process had seen."""
        if created and self._seen_sentinel:
            self.data_losses += 1
            log.warning(
                "Redis lost its data: credit counters are reloaded from the database, and credits spent since "
                "the last write-back (at most one second's worth) can be spent again"
            )
        self._seen_sentinel = True

    # -- without Redis --------------------------------------------------------------------------------------

    async def _without_redis(self, spend: Spend, now_ms: float) -> Outcome:
        if spend.buckets and not self._fail_open:
            self.closed_refusals += 1
            return self._closed(spend, now_ms)
        if spend.buckets:
            self.local_decisions += 1
        return await self.local.spend(spend, now_ms)

    def _without_redis_now(self, spend: Spend, now_ms: float) -> Outcome | None:
        if not self._fail_open:
            self.closed_refusals += 1
            return self._closed(spend, now_ms)
        self.local_decisions += 1
        return self.local.spend_now(spend, now_ms)

    def _closed(self, spend: Spend, now_ms: float) -> Outcome:
        # Try again when the breaker lets Redis be tried again.
        reset = now_ms + self._redis.breaker.wait_s() * 1000
        states = tuple(LimitState(b.name, b.limit, 0, reset) for b in spend.buckets)
        return Outcome(Code.RATE_LIMITED, states, spend.credits.remaining if spend.credits is not None else None)


class _Prepared:
    """A spend's part of a ``spend.lua`` call, packed once: an entry of the verification cache spends the same
    :class:`Spend` on every verification, and packing its keys and arguments every time would cost more than
    the rest of the call."""

    __slots__ = ("_args", "_head", "_keys", "_modes", "_refill", "credits", "limits", "spend")

    def __init__(self, spender: RedisSpender, spend: Spend) -> None:
        self.spend = spend  # kept alive, so that no other spend can take its id while it is cached
        keys, args = spender._bucket_args(spend.buckets)
        nb = len(spend.buckets)
        bucket_args = [encode(arg) for arg in args[1:]]
        # (keys, key count, arguments, argument count) as RedisConnection.submit_part takes them
        self.limits = (
            bulk([key.encode() for key in keys]),
            nb,
            bulk([b"%d" % nb, b"%d" % nb, *bucket_args]),
            len(args) + 1,
        )
        credits = spend.credits if spender.credits_in_redis else None
        self.credits = credits
        self._refill = credits.refill if credits is not None else None
        if credits is None:
            return
        keys += [spender._counter_prefix + credits.id, spender._dirty, spender._sentinel]
        self._keys = bulk([key.encode() for key in keys])
        head = [b"%d" % nb, b"%d" % len(keys), *bucket_args, credits.id.encode(), b"%d" % spend.cost]
        self._head = bulk(head)
        self._args = len(head) + 3  # then the refill amount and moment, and the mode
        if self._refill is None:
            self._modes = (self._part(-1, 0, 0), self._part(-1, 0, 1))

    def part(self, now_ms: float, mode: int, load: tuple[int, int, int, int] = (0, 0, 0, 0)) -> Part:
        """This spend's part in ``mode`` (0 spend, 1 reload, 2 load with ``load``: ttl, remaining,
        refilled_at, seen)."""
        if self._refill is None:
            if mode < 2:
                return self._modes[mode]
            return self._part(-1, 0, 2, load)
        assert self.credits is not None
        refill = refill_of(self.credits, int(now_ms))
        amount, moment = refill if refill is not None else (-1, 0)
        return self._part(amount, moment, mode, load)

    def _part(self, amount: int, moment: int, mode: int, load: tuple[int, ...] = ()) -> Part:
        tail = [b"%d" % value for value in (amount, moment, mode, *(load if mode == 2 else ()))]
        key_count = 3 + len(self.spend.buckets)
        return self._keys, key_count, self._head + bulk(tail), self._args + len(tail) - 3


def _states(reply: list[Any], buckets: Sequence[Bucket], first: int = 6) -> tuple[LimitState, ...]:
    """The limits' states from a script reply, whose pairs of remaining and reset_at (us) begin at ``first``."""
    return tuple(
        LimitState(b.name, b.limit, reply[first + 2 * i], reply[first + 1 + 2 * i] / 1000)
        for i, b in enumerate(buckets)
    )


def _outcome(reply: list[Any], spend: Spend) -> Outcome:
    left: int | None = reply[2]
    if left is not None and left < 0:  # no credits in Redis, or a counter not read: the balance as last seen
        left = spend.credits.remaining if spend.credits is not None else None
    buckets = spend.buckets
    if len(buckets) == 1:  # the common case, without a generator
        bucket = buckets[0]
        states: tuple[LimitState, ...] = (LimitState(bucket.name, bucket.limit, reply[6], reply[7] / 1000),)
    else:
        states = _states(reply, buckets)
    return Outcome(_CODES[reply[0]], states, left)
