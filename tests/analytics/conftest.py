"""Fixtures of the analytics tests: two APIs with keys, root keys of several scopes, on every backend."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from keystile.core.commands import NewApi, NewKey, NewRootKey
from keystile.core.models import Api, Key
from keystile.service import Actor, Keystile, Principal


@dataclass
class Deployment:
    """APIs ``a`` and ``b``; keys ``a1`` (owner alice), ``a2`` (owner bob) in ``a`` and ``b1`` (alice) in ``b``;
    principals: ``admin`` (``*``), ``scoped`` (``analytics.read`` for ``a`` only), ``blind`` (``keys.read``)."""

    ks: Keystile
    a: Api
    b: Api
    a1: Key
    a2: Key
    b1: Key
    admin: Principal
    scoped: Principal
    blind: Principal

    def triples(self) -> list[tuple[str, str, str | None]]:
        """``(api_id, key_id, owner_id)`` of every key, for building events."""
        return [(k.api_id, k.id, k.owner_id) for k in (self.a1, self.a2, self.b1)]


async def principal(ks: Keystile, actor: Actor, *permissions: str) -> Principal:
    _, plain = await ks.root_keys.create(actor, NewRootKey(permissions=list(permissions)))
    return await ks.root_keys.authenticate(plain)


@pytest.fixture
async def deployment(ks: Keystile, root: tuple[Actor, str]) -> Deployment:
    actor = root[0]
    a = await ks.apis.create(actor, NewApi(name="a"))
    b = await ks.apis.create(actor, NewApi(name="b"))
    a1, _ = await ks.keys.create(actor, a.id, NewKey(name="a1", owner_id="alice"))
    a2, _ = await ks.keys.create(actor, a.id, NewKey(name="a2", owner_id="bob"))
    b1, _ = await ks.keys.create(actor, b.id, NewKey(name="b1", owner_id="alice"))
    return Deployment(
        ks,
        a,
        b,
        a1,
        a2,
        b1,
        actor.principal,
        await principal(ks, actor, f"api.{a.id}.analytics.read"),
        await principal(ks, actor, "keys.read"),
    )
