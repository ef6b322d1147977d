"""Contract: browser sessions and one-time links of the dashboard and the portal (SPEC D1, D2), by digest."""

from __future__ import annotations

import asyncio
import hashlib

from keystile.core.models import WebSession
from keystile.storage import SqlStorage


def _session(name: str, expires_at: int, kind: str = "dashboard") -> WebSession:
    return WebSession(
        digest=hashlib.sha256(name.encode()).digest(),
        kind=kind,
        subject='{"owner_id": "Zoë ✓"}',
        csrf="csrf-" + name,
        created_at=1_000,
        seen_at=1_000,
        expires_at=expires_at,
    )


async def test_a_session_reads_back_until_it_expires_and_moves_on_when_touched(storage: SqlStorage) -> None:
    session = _session("a", 5_000)
    await storage.put_web_session(session)
    assert await storage.get_web_session(session.digest, at_ms=4_999) == session
    assert await storage.get_web_session(session.digest, at_ms=5_000) is None
    await storage.touch_web_session(session.digest, seen_at=4_000, expires_at=9_000)
    touched = await storage.get_web_session(session.digest, at_ms=5_000)
    assert touched is not None
    assert (touched.seen_at, touched.expires_at) == (4_000, 9_000)
    assert await storage.get_web_session(hashlib.sha256(b"other").digest(), at_ms=0) is None


async def test_a_link_is_taken_once_even_by_two_takers_at_once(storage: SqlStorage) -> None:
    link = _session("link", 5_000, kind="portal_link")
    await storage.put_web_session(link)
    taken = await asyncio.gather(*(storage.take_web_session(link.digest, at_ms=2_000) for _ in range(4)))
    assert [found for found in taken if found is not None] == [link]
    assert await storage.get_web_session(link.digest, at_ms=2_000) is None
    late = _session("late", 5_000, kind="portal_link")
    await storage.put_web_session(late)
    assert await storage.take_web_session(late.digest, at_ms=5_000) is None  # expired: taken, but not given


async def test_sessions_are_dropped_one_by_one_or_when_expired(storage: SqlStorage) -> None:
    old, young, mine = _session("old", 2_000), _session("young", 9_000), _session("mine", 9_000)
    for session in (old, young, mine):
        await storage.put_web_session(session)
    assert await storage.drop_web_sessions(digest=mine.digest) == 1
    assert await storage.drop_web_sessions(digest=mine.digest) == 0
    assert await storage.drop_web_sessions(expired_at=5_000) == 1
    assert await storage.get_web_session(young.digest, at_ms=5_000) == young
