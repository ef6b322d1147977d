"""Fixtures of the event tests: a deployment with keys of every outcome, verified through the real service, on
every backend; and a storage whose batch writes fail on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewKey
from keystile.core.models import Api, EventFilter, EventRow, Key, RateLimit, VerificationEvent
from keystile.core.ports import Storage
from keystile.errors import StorageError
from keystile.http.verify import check_of
from keystile.schemas import VerifyRequest
from keystile.service import Actor, Keystile


@dataclass
class World:
    """APIs ``api`` and ``other``; in ``api`` the keys ``alice`` (owner alice, permission ``docs.read``),
    ``bob`` (owner bob, 1 request a minute) and ``gone`` (revoked); in ``other`` the key ``carol`` (owner carol).
    ``plain`` maps each key's name to its plain text."""

    ks: Keystile
    actor: Actor
    clock: ManualClock
    api: Api
    other: Api
    keys: dict[str, Key]
    plain: dict[str, str]

    async def verify(self, name: str | None, request_id: str | None = None, **fields: Any) -> str:
        """Verify the key ``name`` (an unknown key for ``None``) as ``POST /v1/keys/verify`` does."""
        key = self.plain[name] if name is not None else "ks_" + "0" * 40
        result = await self.ks.verification.verify(
            self.actor.principal, check_of(VerifyRequest(key=key, **fields)), request_id=request_id
        )
        return result.code

    async def stored(self, **where: Any) -> list[VerificationEvent]:
        """Every stored event, newest first."""
        return await self.ks.storage.list_events(EventFilter(**where), before=None, limit=100_000)


@pytest.fixture
async def world(ks: Keystile, root: tuple[Actor, str], clock: ManualClock) -> World:
    actor = root[0]
    api = await ks.apis.create(actor, NewApi(name="docs"))
    other = await ks.apis.create(actor, NewApi(name="other"))
    specs = {
        "alice": (api, NewKey(name="alice", owner_id="alice", permissions=["docs.read"])),
        "bob": (
            api,
            NewKey(name="bob", owner_id="bob", ratelimits=[RateLimit(name="r", limit=1, duration_ms=60_000)]),
        ),
        "gone": (api, NewKey(name="gone")),
        "carol": (other, NewKey(name="carol", owner_id="carol")),
    }
    keys: dict[str, Key] = {}
    plain: dict[str, str] = {}
    for name, (owner_api, spec) in specs.items():
        keys[name], plain[name] = await ks.keys.create(actor, owner_api.id, spec)
    keys["gone"] = await ks.keys.revoke(actor, keys["gone"].id)
    return World(ks, actor, clock, api, other, keys, plain)


@dataclass
class FlakyStorage:
    """The real storage, whose ``write_event_rows`` (the event writer's call) fails the next ``fail`` times: before
    writing (storage down), or after writing with ``lose_ack`` (a commit whose acknowledgement was lost on the way
    back, which no real database can be made to do on cue). ``attempts`` keeps the ids of every batch tried."""

    inner: Storage
    fail: int = 0
    lose_ack: bool = False
    refuse: bool = False
    attempts: list[list[str]] = field(default_factory=list)

    async def write_event_rows(self, rows: Sequence[EventRow]) -> None:
        self.attempts.append([row[0] for row in rows])
        if self.refuse:
            raise ValueError("a bug in a storage adapter")
        if self.fail:
            self.fail -= 1
            if self.lose_ack:
                await self.inner.write_event_rows(rows)
            raise StorageError("PostgreSQL unreachable: ConnectionResetError")
        await self.inner.write_event_rows(rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def as_storage(self) -> Storage:
        return cast(Storage, self)
