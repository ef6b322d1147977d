"""Browser sessions of the dashboard and the portal, kept in this process's memory.

The cookie holds a random session id and nothing else: never a key. What the id stands for (the root key's *id*,
or the portal grant), the session's CSRF token and its expiry live here, on the server. Sessions end on sign-out,
after ``ttl_ms`` of inactivity and at the latest ``max_ms`` after sign-in; a revoked root key ends its sessions at
their next request (the dashboard reads the key afresh on every request).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

IDLE_MS = 3_600_000
"""A session unused for an hour ends."""
MAX_MS = 12 * 3_600_000
"""A session ends 12 hours after sign-in, used or not."""
_KEPT = 50_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Session(Generic[T]):
    subject: T
    csrf: str
    created_at: int
    seen_at: int
    flash: list[str] = field(default_factory=list)


class SessionStore(Generic[T]):
    """Session ids to sessions; ``now`` is injectable for tests."""

    def __init__(self, idle_ms: int = IDLE_MS, max_ms: int = MAX_MS, now: Callable[[], int] = _now_ms) -> None:
        self._sessions: dict[str, Session[T]] = {}
        self._idle_ms = idle_ms
        self._max_ms = max_ms
        self._now = now

    def start(self, subject: T) -> tuple[str, Session[T]]:
        now = self._now()
        if len(self._sessions) >= _KEPT:
            self._sessions = {sid: s for sid, s in self._sessions.items() if self._alive(s, now)}
        sid = secrets.token_urlsafe(32)
        session = self._sessions[sid] = Session(subject, secrets.token_urlsafe(32), now, now)
        return sid, session

    def get(self, sid: str | None) -> Session[T] | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._now()
        if not self._alive(session, now):
            del self._sessions[sid]
            return None
        session.seen_at = now
        return session

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def _alive(self, session: Session[T], now: int) -> bool:
        return now - session.seen_at < self._idle_ms and now - session.created_at < self._max_ms


def same_token(given: str | None, expected: str | None) -> bool:
    """Whether a form's CSRF token is the one expected (in constant time; never true for a missing one)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
