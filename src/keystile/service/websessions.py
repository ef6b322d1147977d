"""Browser sessions of the dashboard and the portal, and the portal's one-time sign-in links (SPEC D1, D2, S5).

A session id or link token is 32 random bytes that only the browser (its cookie) or the link holds; storage keeps
its SHA-256, what it stands for (a root key's *id*, or a portal grant) and the session's CSRF token, so that every
process of a deployment knows every session. Sessions end on sign-out, after ``idle_ms`` without use and at the
latest ``max_ms`` after they began; links are taken once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from keystile.core.models import WebSession
from keystile.service.context import Context

IDLE_MS = 3_600_000
"""A session unused for an hour ends."""
MAX_MS = 12 * 3_600_000
"""A session ends 12 hours after sign-in, used or not."""
TOUCH_MS = 60_000
"""A session's last use is written at most once a minute (not on every page)."""
PURGE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Lifetime:
    idle_ms: int = IDLE_MS
    max_ms: int = MAX_MS


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class WebSessions:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._purged_at = 0

    async def start(self, kind: str, subject: str, lifetime: Lifetime = Lifetime()) -> tuple[str, WebSession]:
        """A new session (or link, with ``lifetime.max_ms`` its validity); returns its id, to be given to the
        browser only, and the stored session."""
        now = self._ctx.now()
        await self._purge(now)
        token = secrets.token_urlsafe(32)
        session = WebSession(
            digest=digest(token),
            kind=kind,
            subject=subject,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            seen_at=now,
            expires_at=now + min(lifetime.idle_ms, lifetime.max_ms),
        )
        await self._ctx.storage.put_web_session(session)
        return token, session

    async def get(self, kind: str, token: str | None, lifetime: Lifetime = Lifetime()) -> WebSession | None:
        """The live session of ``kind`` with this id (its last use moved forward), else ``None``."""
        if not token or len(token) > 256:
            return None
        now = self._ctx.now()
        session = await self._ctx.storage.get_web_session(digest(token), at_ms=now)
        if session is None or session.kind != kind:
            return None
        if now - session.seen_at >= TOUCH_MS:
            expires_at = min(now + lifetime.idle_ms, session.created_at + lifetime.max_ms)
            await self._ctx.storage.touch_web_session(session.digest, seen_at=now, expires_at=expires_at)
        return session

    async def take(self, kind: str, token: str) -> WebSession | None:
        """Use up a one-time link: its session, or ``None`` when it was used, expired or never existed."""
        if not token or len(token) > 256:
            return None
        session = await self._ctx.storage.take_web_session(digest(token), at_ms=self._ctx.now())
        return session if session is not None and session.kind == kind else None

    async def end(self, token: str | None) -> None:
        if token and len(token) <= 256:
            await self._ctx.storage.drop_web_sessions(digest=digest(token))

    async def _purge(self, now: int) -> None:
        if now - self._purged_at >= PURGE_MS:
            self._purged_at = now
            await self._ctx.storage.drop_web_sessions(expired_at=now)
