"""Clocks: the only source of time for the core, so that tests move time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (wall clock)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for TTLs)."""


class SystemClock:
    """The real clock."""

    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds
        self._mono += seconds


def now_ms(clock: Clock) -> int:
    """Milliseconds since the epoch: how every time is stored and compared."""
    return int(clock.now() * 1000)
