"""The verification cache follows every write at once (SPEC V6, in one process): no clock movement needed.

Each test first makes sure the key is cached (the verifier answers it without storage), then changes something
through the services and verifies again straight away.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewKey
from keystile.core.models import KeyBundle
from keystile.core.ports import Storage
from keystile.core.verify import KeyCheck
from keystile.schemas import api_update, key_update
from keystile.service import Keystile
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


class Check:
    """Verifies one key as the admin, and says whether the answer came from the cache."""

    def __init__(self, ks: Keystile, admin: Admin, plain: str) -> None:
        self.ks = ks
        self.admin = admin
        self.plain = plain

    async def code(self, *, permissions: str | None = None, ip: str | None = None) -> str:
        request = KeyCheck(self.plain, permissions=permissions, ip=ip)
        return (await self.ks.verification.verify(self.admin.actor.principal, request)).code

    def cached(self) -> bool:
        return self.ks.ctx.verifier.verify_cached(self.plain) is not None

    async def warm(self, expected: str, **request: str) -> None:
        """Verify until the answer is cached, and check it."""
        assert await self.code(**request) == expected
        assert self.cached(), "the key is cached now, so a stale answer would show"
        assert await self.code(**request) == expected


@pytest.fixture
async def setup(ks: Keystile, admin: Admin) -> tuple[str, str, Check]:
    api = await admin.api(NewApi(name="cached"))
    await ks.apis.put_role(admin.actor, api.id, name="reader", permissions=["docs.read"])
    key, plain = await ks.keys.create(
        admin.actor, api.id, NewKey(permissions=["blog.read"], roles=["reader"], name="cached key")
    )
    return api.id, key.id, Check(ks, admin, plain)


async def test_revoking_a_key_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    _, key_id, check = setup
    await check.warm("VALID")

    await ks.keys.revoke(admin.actor, key_id)

    assert await check.code() == "REVOKED"


async def test_disabling_and_enabling_a_key_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    _, key_id, check = setup
    await check.warm("VALID")

    await ks.keys.update(admin.actor, key_id, key_update({"enabled": False}))
    assert await check.code() == "DISABLED"
    assert await check.code() == "DISABLED"

    await ks.keys.update(admin.actor, key_id, key_update({"enabled": True}))
    assert await check.code() == "VALID"


async def test_changing_a_keys_permissions_allowlist_and_expiry_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check], clock: ManualClock
) -> None:
    _, key_id, check = setup
    await check.warm("VALID", permissions="blog.read")

    await ks.keys.update(admin.actor, key_id, key_update({"permissions": ["blog.write"]}))
    assert await check.code(permissions="blog.read") == "INSUFFICIENT_PERMISSIONS"
    assert await check.code(permissions="blog.write") == "VALID"

    await ks.keys.update(admin.actor, key_id, key_update({"ip_allowlist": ["10.0.0.0/8"]}))
    assert await check.code(ip="192.0.2.1") == "FORBIDDEN"
    assert await check.code(ip="10.1.2.3") == "VALID"
    await ks.keys.update(admin.actor, key_id, key_update({"ip_allowlist": None}))
    await check.warm("VALID", ip="192.0.2.1")

    past = datetime.fromtimestamp(clock.now() - 1, UTC)
    await ks.keys.update(admin.actor, key_id, key_update({"expires_at": past.isoformat()}))
    assert await check.code() == "EXPIRED"


async def test_deleting_a_key_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    _, key_id, check = setup
    await check.warm("VALID")

    await ks.keys.delete(admin.actor, key_id)

    assert await check.code() == "NOT_FOUND"
    assert await check.code() == "NOT_FOUND"


async def test_changing_the_apis_allowlist_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    api_id, _, check = setup
    await check.warm("VALID", ip="192.0.2.1")

    await ks.apis.update(admin.actor, api_id, api_update({"ip_allowlist": ["10.0.0.0/8"]}))
    assert await check.code(ip="192.0.2.1") == "FORBIDDEN"
    assert await check.code() == "FORBIDDEN", "no client IP while an allowlist exists"
    await check.warm("VALID", ip="10.9.9.9")

    await ks.apis.update(admin.actor, api_id, api_update({"ip_allowlist": None}))
    assert await check.code(ip="192.0.2.1") == "VALID"


async def test_changing_or_deleting_a_role_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    api_id, _, check = setup
    await check.warm("VALID", permissions="docs.read")

    await ks.apis.put_role(admin.actor, api_id, name="reader", permissions=["docs.list"])
    assert await check.code(permissions="docs.read") == "INSUFFICIENT_PERMISSIONS"
    await check.warm("VALID", permissions="docs.list")

    await ks.apis.delete_role(admin.actor, api_id, "reader")
    assert await check.code(permissions="docs.list") == "INSUFFICIENT_PERMISSIONS"
    assert await check.code(permissions="blog.read") == "VALID", "the key's own permissions remain"


async def test_giving_a_key_a_role_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    api_id, key_id, check = setup
    await ks.apis.put_role(admin.actor, api_id, name="admin", permissions=["admin.*"])
    await check.warm("INSUFFICIENT_PERMISSIONS", permissions="admin.users")

    await ks.keys.update(admin.actor, key_id, key_update({"roles": ["reader", "admin"]}))

    assert await check.code(permissions="admin.users") == "VALID"


async def test_deleting_the_api_shows_on_the_next_verification(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    api_id, _, check = setup
    await check.warm("VALID")

    await ks.apis.delete(admin.actor, api_id)

    assert await check.code() == "NOT_FOUND"


async def test_changes_to_one_key_leave_other_cached_keys_cached(
    ks: Keystile, admin: Admin, setup: tuple[str, str, Check]
) -> None:
    api_id, key_id, check = setup
    other_api = await admin.api(NewApi(name="other"))
    _, neighbour = await ks.keys.create(admin.actor, api_id, NewKey())
    _, elsewhere = await ks.keys.create(admin.actor, other_api.id, NewKey())
    neighbour_check, elsewhere_check = Check(ks, admin, neighbour), Check(ks, admin, elsewhere)
    for each in (check, neighbour_check, elsewhere_check):
        await each.warm("VALID")

    await ks.keys.revoke(admin.actor, key_id)
    assert neighbour_check.cached()
    assert elsewhere_check.cached()

    await ks.apis.update(admin.actor, api_id, api_update({"name": "renamed"}))
    assert not neighbour_check.cached(), "an API change drops the API's keys"
    assert elsewhere_check.cached(), "and only those"


class PausedReads:
    """Real storage whose verification reads can be held open, to let a write overtake them."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.hold = False
        self.reading = asyncio.Event()
        self.resume = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    async def load_for_verify(self, digest: bytes) -> KeyBundle | None:
        bundle = await self._storage.load_for_verify(digest)
        if self.hold:
            self.hold = False
            self.reading.set()
            await self.resume.wait()
        return bundle


async def test_a_revocation_that_overtakes_a_storage_read_is_not_lost(
    storage: SqlStorage, settings: Settings, clock: ManualClock, admin: Admin
) -> None:
    paused = PausedReads(storage)
    ks = Keystile.create(cast(Storage, paused), settings, clock)
    api = await ks.apis.create(admin.actor, NewApi(name="racy"))
    key, plain = await ks.keys.create(admin.actor, api.id, NewKey())
    principal = admin.actor.principal

    paused.hold = True
    in_flight = asyncio.create_task(ks.verification.verify(principal, KeyCheck(plain)))
    await paused.reading.wait()  # the read has the key as it was before the revocation
    await ks.keys.revoke(admin.actor, key.id)
    paused.resume.set()

    assert (await in_flight).code == "VALID", "it started before the revocation"
    assert (await ks.verification.verify(principal, KeyCheck(plain))).code == "REVOKED"
