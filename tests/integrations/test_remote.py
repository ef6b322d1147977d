"""RemoteVerifier: asks a server (here in process), keeps answers that spent nothing for its TTL, by digest."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from keystile import AsyncClient
from keystile.config import Settings
from keystile.integrations import RemoteVerifier
from keystile.schemas import VerifyRequest
from keystile.server import create_app
from keystile.service import Actor, Keystile

from .conftest import MakeKey


class Ticks:
    """The remote verifier's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
async def remote(
    ks: Keystile, settings: Settings, root: tuple[Actor, str], ticks: Ticks
) -> AsyncIterator[RemoteVerifier]:
    transport = httpx.ASGITransport(app=create_app(settings, keystile=ks))
    client = AsyncClient("http://keystile", root[1], transport=transport)
    verifier = RemoteVerifier("http://keystile", root[1], cache_ttl=2.0, clock=ticks, client=client)
    yield verifier
    await verifier.aclose()


async def test_an_answer_is_reused_for_the_cache_ttl_and_no_longer(
    remote: RemoteVerifier, make_key: MakeKey, ks: Keystile, root: tuple[Actor, str], ticks: Ticks
) -> None:
    key_id, plain = await make_key(permissions=["notes.read"])
    assert (await remote.verify(VerifyRequest(key=plain))).code == "VALID"
    await ks.keys.revoke(root[0], key_id)

    ticks.now += 1.9
    assert (await remote.verify(VerifyRequest(key=plain))).code == "VALID"  # the documented staleness
    assert (await remote.verify(VerifyRequest(key=plain, permissions="notes.read"))).code == "REVOKED"  # own slot
    ticks.now += 0.2
    assert (await remote.verify(VerifyRequest(key=plain))).code == "REVOKED"


async def test_keys_with_credits_or_rate_limits_are_asked_about_every_time(
    remote: RemoteVerifier, make_key: MakeKey
) -> None:
    _, credited = await make_key(credits={"remaining": 3})
    remaining = [(await remote.verify(VerifyRequest(key=credited))).credits for _ in range(4)]
    assert [r.remaining if r else None for r in remaining] == [2, 1, 0, 0]

    _, limited = await make_key(ratelimits=[{"name": "requests", "limit": 1, "duration_ms": 60_000}])
    codes = [(await remote.verify(VerifyRequest(key=limited))).code for _ in range(2)]
    assert codes == ["VALID", "RATE_LIMITED"]


async def test_the_cache_holds_digests_never_keys(remote: RemoteVerifier, make_key: MakeKey) -> None:
    _, plain = await make_key()
    await remote.verify(VerifyRequest(key=plain))

    [slot] = remote._cache
    assert slot[0] == hashlib.sha256(plain.encode()).digest()
    assert plain not in repr(remote._cache)
