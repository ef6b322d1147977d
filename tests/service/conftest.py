"""Helpers for the service tests: root keys with chosen permissions, and audit entries to compare; the shared
Redis under a key prefix of each test's own (:mod:`tests.redis.fixtures`)."""

from __future__ import annotations

import pytest
from tests.redis.fixtures import prefix, redis_url  # noqa: F401 (fixtures)

from keystile.core.commands import NewApi, NewRootKey
from keystile.core.models import Api, AuditEntry, AuditFilter
from keystile.service import Keystile
from keystile.service.authz import Actor

IP = "203.0.113.7"
USER_AGENT = "keystile-tests/1.0"


class Admin:
    """Does things as the first root key (permission ``*``), and makes root keys with fewer permissions."""

    def __init__(self, ks: Keystile, actor: Actor) -> None:
        self.ks = ks
        self.actor = actor

    async def actor_with(self, *permissions: str) -> Actor:
        """An actor holding a new root key with exactly ``permissions``."""
        _, plain = await self.ks.root_keys.create(self.actor, NewRootKey(permissions=list(permissions)))
        return Actor(await self.ks.root_keys.authenticate(plain), IP, USER_AGENT)

    async def api(self, spec: NewApi | None = None) -> Api:
        return await self.ks.apis.create(self.actor, spec or NewApi(name="an api"))

    async def audit(self, where: AuditFilter | None = None) -> list[AuditEntry]:
        """Every audit entry (matching ``where``), oldest first."""
        entries = await self.ks.storage.list_audit(where or AuditFilter(), before=None, limit=10_000)
        return list(reversed(entries))


@pytest.fixture
async def admin(ks: Keystile, root: tuple[Actor, str]) -> Admin:
    actor, _ = root
    return Admin(ks, Actor(actor.principal, IP, USER_AGENT))
