"""A circuit breaker: after a backend fails, callers fail at once instead of each waiting on it again.

Closed, every call goes through. A failure opens it for a backoff that doubles with each failure in a row (up to
a ceiling); while open, :meth:`Breaker.admit` refuses at once, without touching the network. When the backoff is
over, ONE call is let through as a trial (the others are still refused): its success closes the breaker, its
failure opens it again. So a backend that hangs (connections open, no answer) makes one caller wait for its
deadline per backoff, never every caller, and recovery needs no restart.
"""

from __future__ import annotations

from keystile.core.clock import Clock


class Breaker:
    """Whether a backend may be tried now. ``first_backoff_s`` doubles with each failure up to ``max_backoff_s``.

    Callers do ``if breaker.admit(): try the call, then breaker.succeeded() or breaker.failed()``; a call that ends
    neither way (cancelled) must call :meth:`abandoned` so that the next trial is not held back.
    """

    __slots__ = ("_backoff", "_clock", "_first", "_max", "_trial", "down", "failures", "retry_at")

    def __init__(self, clock: Clock, first_backoff_s: float = 0.1, max_backoff_s: float = 1.0) -> None:
        self._clock = clock
        self._first = first_backoff_s
        self._max = max_backoff_s
        self._backoff = first_backoff_s
        self._trial = False
        self.down = False
        """Whether the last call failed (the breaker is open or trying)."""
        self.retry_at = 0.0
        self.failures = 0
        """Failures counted since start."""

    def admit(self) -> bool:
        """Whether a call may go out now (the trial call, when the breaker is open and its backoff is over)."""
        if not self.down:
            return True
        if self._trial or self._clock.monotonic() < self.retry_at:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        self.down = False
        self._trial = False
        self._backoff = self._first

    def failed(self) -> None:
        self.failures += 1
        if self.down:
            self._backoff = min(self._backoff * 2, self._max)
        self.down = True
        self._trial = False
        self.retry_at = self._clock.monotonic() + self._backoff

    def abandoned(self) -> None:
        """A call admitted as the trial ended without an answer either way."""
        self._trial = False

    def wait_s(self) -> float:
        """How long until the next trial may go out (0 when a call may go out now)."""
        return max(0.0, self.retry_at - self._clock.monotonic()) if self.down else 0.0
