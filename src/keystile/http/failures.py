"""Failed key attempts per client IP (SPEC V5): so that ``/v1/auth``, the OAuth token endpoint and the
dashboard's sign-in cannot be used to guess keys.

Each failure (a 401 for a request that carried a key) spends one unit of the client's bucket, a token bucket of
``per_minute`` units refilled over a minute, kept by the verifier's spender: in this process's memory, or in
Redis (shared by every instance) when one is configured, exactly like a key's rate limits. When a failure finds
the bucket empty, the client is blocked in this process until one unit is back, and every request it sends
meanwhile is answered 429 before any key is looked at: a blocked client learns nothing, valid key or not.
"""

from __future__ import annotations

import logging

from keystile.core.clock import Clock
from keystile.core.ports import Spend, Spender
from keystile.core.ratelimit import Bucket
from keystile.core.verify import Code
from keystile.errors import RateLimited
from keystile.http.answers import whole_seconds

log = logging.getLogger("keystile.server")

_MINUTE_MS = 60_000
_MAX_BLOCKED = 100_000


class FailureLimiter:
    """Counts failures per client IP through a :class:`Spender` and remembers the clients it blocked."""

    __slots__ = ("_blocked", "_clock", "_interval_ms", "_per_minute", "_spender")

    def __init__(self, spender: Spender | None, clock: Clock, per_minute: int) -> None:
        self._spender = spender
        self._clock = clock
        self._per_minute = per_minute
        self._interval_ms = -(-_MINUTE_MS // per_minute) if per_minute else 0
        self._blocked: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self._per_minute > 0 and self._spender is not None

    def blocked_for(self, ip: str | None) -> float:
        """Milliseconds until ``ip`` may try again (0: it may now)."""
        if ip is None or not self._blocked:
            return 0.0
        until = self._blocked.get(ip)
        if until is None:
            return 0.0
        left = until - self._clock.now() * 1000
        if left <= 0:
            del self._blocked[ip]
            return 0.0
        return left

    async def fail(self, ip: str | None) -> float:
        """Count one failure of ``ip``; milliseconds it is now blocked for (0: not blocked). Never raises: a
        limits backend that fails must not turn a 401 into an error."""
        spender = self._spender
        if ip is None or spender is None or not self._per_minute:
            return 0.0
        spend = Spend((Bucket(f"af:{ip}", "auth_failures", self._per_minute, _MINUTE_MS),), None, 0)
        now_ms = self._clock.now() * 1000
        try:
            outcome = spender.spend_now(spend, now_ms)
            if outcome is None:
                outcome = await spender.spend(spend, now_ms)
        except Exception:
            log.exception("counting a failed forward-auth attempt failed")
            return 0.0
        if outcome.code != Code.RATE_LIMITED:
            return 0.0
        # An empty bucket gets one unit back within one interval.
        if len(self._blocked) >= _MAX_BLOCKED:
            self._drop_expired(now_ms)
        self._blocked[ip] = now_ms + self._interval_ms
        return float(self._interval_ms)

    def _drop_expired(self, now_ms: float) -> None:
        for ip in [ip for ip, until in self._blocked.items() if until <= now_ms]:
            del self._blocked[ip]
        while len(self._blocked) >= _MAX_BLOCKED:
            del self._blocked[next(iter(self._blocked))]


def too_many_failures(wait_ms: float) -> RateLimited:
    """The 429 answering a client blocked for ``wait_ms`` (``Retry-After`` in whole seconds)."""
    return RateLimited(
        "too many failed attempts from this address; retry later",
        code="too_many_failures",
        retry_after=whole_seconds(wait_ms),
    )
