"""Standalone rate limits (SPEC L4): exactly ``limit`` at once from an idle start, per namespace and identifier,
capacity given back over time (manual clock), and the permission it takes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from keystile.core.clock import ManualClock
from keystile.core.ports import Outcome
from keystile.errors import Forbidden
from keystile.schemas import RatelimitRequest
from keystile.service import Keystile, Principal

if TYPE_CHECKING:
    from tests.service.conftest import Admin


def request(identifier: str = "203.0.113.7", *, namespace: str = "login", cost: int = 1) -> RatelimitRequest:
    return RatelimitRequest(namespace=namespace, identifier=identifier, limit=5, duration_ms=10_000, cost=cost)


async def limit(ks: Keystile, admin: Admin, body: RatelimitRequest) -> Outcome:
    return await limit_as(ks, admin.actor.principal, body)


async def limit_as(ks: Keystile, principal: Principal, body: RatelimitRequest) -> Outcome:
    """What ``POST /v1/ratelimit`` asks the service for ``body``."""
    return await ks.ratelimits.limit(
        principal,
        body.namespace,
        body.identifier,
        limit=body.limit,
        duration_ms=body.duration_ms,
        cost=body.cost,
    )


async def test_an_idle_identifier_gets_exactly_the_limit_and_not_one_more(ks: Keystile, admin: Admin) -> None:
    outcomes = await asyncio.gather(*(limit(ks, admin, request()) for _ in range(50)))

    assert [o.code for o in outcomes] == ["VALID"] * 5 + ["RATE_LIMITED"] * 45
    assert [o.ratelimits[0].remaining for o in outcomes[:6]] == [4, 3, 2, 1, 0, 0]
    assert all(o.remaining is None for o in outcomes), "no credits are involved"


async def test_capacity_comes_back_at_limit_per_duration(ks: Keystile, admin: Admin, clock: ManualClock) -> None:
    for _ in range(5):
        assert (await limit(ks, admin, request())).code == "VALID"
    refused = await limit(ks, admin, request())
    assert refused.code == "RATE_LIMITED"
    # Full again 10 s after the burst; one request's worth comes back every 2 s.
    assert refused.ratelimits[0].reset_at == clock.now() * 1000 + 10_000

    clock.advance(1.999)
    assert (await limit(ks, admin, request())).code == "RATE_LIMITED"
    clock.advance(0.001)
    assert (await limit(ks, admin, request())).code == "VALID"
    assert (await limit(ks, admin, request())).code == "RATE_LIMITED"


async def test_namespaces_and_identifiers_have_buckets_of_their_own(ks: Keystile, admin: Admin) -> None:
    for _ in range(5):
        await limit(ks, admin, request("alice"))

    assert (await limit(ks, admin, request("alice"))).code == "RATE_LIMITED"
    assert (await limit(ks, admin, request("bob"))).code == "VALID"
    assert (await limit(ks, admin, request("alice", namespace="signup"))).code == "VALID"


async def test_a_cost_counts_as_that_many_requests_and_a_refusal_spends_nothing(ks: Keystile, admin: Admin) -> None:
    first = await limit(ks, admin, request(cost=3))
    assert (first.code, first.ratelimits[0].remaining) == ("VALID", 2)

    too_much = await limit(ks, admin, request(cost=3))
    assert (too_much.code, too_much.ratelimits[0].remaining) == ("RATE_LIMITED", 2)
    peek = await limit(ks, admin, request(cost=0))
    assert (peek.code, peek.ratelimits[0].remaining) == ("VALID", 2)
    assert (await limit(ks, admin, request(cost=2))).code == "VALID"


@pytest.mark.parametrize("permissions", [("keys.read", "keys.write"), ("api.api_0000000000000000000000.keys.verify",)])
async def test_it_needs_keys_verify_for_every_api(ks: Keystile, admin: Admin, permissions: tuple[str, ...]) -> None:
    actor = await admin.actor_with(*permissions)

    with pytest.raises(Forbidden):
        await limit_as(ks, actor.principal, request())

    verifier = await admin.actor_with("keys.verify")
    assert (await limit_as(ks, verifier.principal, request())).code == "VALID"
