"""A Redis connection's circuit breaker, and the probes that close it again (SPEC L2: recover by itself).

A failed call opens the breaker (:class:`keystile.core.breaker.Breaker`, the one PostgreSQL's driver has too).
While it is open, calls fail at once without touching the network: a Redis that is down, or silent, costs a caller
at most one deadline, at the start of the outage, and never again while it lasts.

The breaker's trial is a probe, never a call: in the background, one backoff after the failure (0.1 s, doubling
with each probe that fails, up to 1 s), a probe opens a new connection and asks Redis the time, within the
deadline; when Redis answers, the calls use that connection and the breaker closes (recovery needs no restart).
A probe costs no caller a wait, where a call as the trial would make its caller wait for the deadline of a silent
Redis. A readiness check may probe out of turn (see ``RedisConnection.ping``); concurrent probes share one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from keystile.core.breaker import Breaker
from keystile.core.clock import Clock

# The logger operators know a Redis outage by (docs/operations.md), from before this module was split off limits.
log = logging.getLogger("keystile.limits")

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0


class Recovery:
    """The breaker of one connection, and its probes.

    ``reopen()`` is how a probe tries Redis: it opens a new connection and hands it to the calls (True), or closes
    it again when it is not needed after all (False: the breaker closed meanwhile, or the connection is closing);
    it raises OSError or TimeoutError when Redis does not answer within the deadline.
    """

    def __init__(self, clock: Clock, reopen: Callable[[], Awaitable[bool]]) -> None:
        self.breaker = Breaker(clock, FIRST_BACKOFF_S, MAX_BACKOFF_S)
        self._reopen = reopen
        self._probe: asyncio.Task[bool] | None = None  # the probe under way
        self._recovering: asyncio.Task[None] | None = None  # probes a backoff apart while the breaker is open
        self._closed = False

    def failed(self, exc: BaseException) -> None:
        """The connection failed with ``exc``: open the breaker (logging the start of an outage, once) and probe
        in the background until Redis answers."""
        if not self.breaker.down:
            log.warning("Redis is unreachable (%s); calls fail at once until it answers again", describe(exc))
        self.breaker.failed()
        if self._recovering is None and not self._closed:
            self._recovering = asyncio.get_running_loop().create_task(self._recover(), name="keystile-redis-probe")

    async def probe(self) -> bool:
        """Whether Redis answers: while the breaker is open, a probe (see the module docstring), which closes it
        when Redis answers. True at once while the breaker is closed."""
        if not self.breaker.down:
            return True
        probe = self._probe
        if probe is None:
            probe = self._probe = asyncio.get_running_loop().create_task(self._probe_once())
        return await asyncio.shield(probe)

    async def close(self) -> None:
        """Stop probing."""
        self._closed = True
        tasks = [task for task in (self._recovering, self._probe) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _recover(self) -> None:
        """Probe Redis a backoff apart until it answers."""
        try:
            while self.breaker.down and not self._closed:
                await asyncio.sleep(self.breaker.wait_s())
                await self.probe()
        finally:
            self._recovering = None

    async def _probe_once(self) -> bool:
        try:
            try:
                adopted = await self._reopen()
            except (OSError, TimeoutError):
                self.breaker.failed()
                return False
            if not adopted:
                return not self._closed
            self.breaker.succeeded()
            log.warning("Redis answers again")
            return True
        finally:
            self._probe = None


def describe(exc: BaseException) -> str:
    """An exception in a log line: its type, and its message when it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
