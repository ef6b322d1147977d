"""``POST /v1/keys/verify`` with limits (SPEC V1, V2, L1, L3): RATE_LIMITED before USAGE_EXCEEDED, ``reset_at``
reported, a refused request spends nothing, and a rate limit the key does not have is a 400."""

from __future__ import annotations

from typing import Any

import httpx

from keystile.core.clock import ManualClock

from .helpers import Headers, problem

Json = dict[str, Any]
NOW = "2027-01-15T08:00:00.000Z"  # where the manual clock starts


async def verify(client: httpx.AsyncClient, headers: Headers, **body: Any) -> Json:
    response = await client.post("/v1/keys/verify", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: Json = response.json()
    return result


async def new_key(client: httpx.AsyncClient, auth: Headers, api: Json, **fields: Any) -> Json:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


def one_per_10s(name: str = "api", **extra: Any) -> Json:
    return {"name": name, "limit": 1, "duration_ms": 10_000, **extra}


async def test_a_rate_limited_key_says_when_its_limit_is_full_again(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    key = await new_key(client, auth, api, ratelimits=[{"name": "api", "limit": 2, "duration_ms": 10_000}])

    first = await verify(client, auth, key=key["key"])
    assert first["code"] == "VALID"
    assert first["ratelimits"] == [{"name": "api", "limit": 2, "remaining": 1, "reset_at": "2027-01-15T08:00:05.000Z"}]
    assert (await verify(client, auth, key=key["key"]))["code"] == "VALID"

    refused = await verify(client, auth, key=key["key"])
    assert refused["valid"] is False
    assert refused["code"] == "RATE_LIMITED"
    assert refused["key_id"] == key["id"]
    assert refused["ratelimits"] == [
        {"name": "api", "limit": 2, "remaining": 0, "reset_at": "2027-01-15T08:00:10.000Z"}
    ]

    clock.advance(5)
    assert (await verify(client, auth, key=key["key"]))["code"] == "VALID"


async def test_rate_limited_comes_before_usage_exceeded_and_neither_spends(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    key = await new_key(client, auth, api, ratelimits=[one_per_10s()], credits={"remaining": 1})

    assert (await verify(client, auth, key=key["key"]))["credits"] == {"remaining": 0}
    limited = await verify(client, auth, key=key["key"])
    # Both the limit and the credits are exhausted: the limit is checked first (SPEC V2).
    assert limited["code"] == "RATE_LIMITED"
    assert limited["ratelimits"][0]["reset_at"] == "2027-01-15T08:00:10.000Z"

    clock.advance(10)
    exceeded = await verify(client, auth, key=key["key"])
    assert exceeded["code"] == "USAGE_EXCEEDED"
    assert exceeded["credits"] == {"remaining": 0}
    # The refused request gave its rate-limit capacity back: topping up lets the very next request through.
    assert exceeded["ratelimits"][0]["remaining"] == 1
    await client.post(f"/v1/keys/{key['id']}/credits", json={"op": "add", "amount": 1}, headers=auth)
    assert (await verify(client, auth, key=key["key"]))["code"] == "VALID"


async def test_an_earlier_failure_spends_neither_credits_nor_capacity(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = await new_key(
        client, auth, api, permissions=["docs.read"], ratelimits=[one_per_10s()], credits={"remaining": 1}
    )

    for _ in range(3):
        assert (await verify(client, auth, key=key["key"], permissions="admin"))["code"] == "INSUFFICIENT_PERMISSIONS"

    assert (await verify(client, auth, key=key["key"], permissions="docs.read"))["code"] == "VALID"


async def test_named_limits_are_applied_at_their_cost_with_credits_at_theirs(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = await new_key(
        client,
        auth,
        api,
        ratelimits=[{"name": "search", "limit": 10, "duration_ms": 60_000, "auto_apply": False}],
        credits={"remaining": 100},
    )

    plain = await verify(client, auth, key=key["key"])
    assert (plain["ratelimits"], plain["credits"]) == ([], {"remaining": 99})

    named = await verify(client, auth, key=key["key"], ratelimits=[{"name": "search", "cost": 4}], credits={"cost": 5})
    assert [(s["name"], s["remaining"]) for s in named["ratelimits"]] == [("search", 6)]
    assert named["credits"] == {"remaining": 94}


async def test_a_rate_limit_the_key_does_not_have_is_400(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    response = await client.post(
        "/v1/keys/verify", json={"key": key["key"], "ratelimits": [{"name": "nonesuch"}]}, headers=auth
    )

    body = problem(response, 400, "unknown_ratelimit")
    assert body["field"] == "/ratelimits"
    assert key["key"] not in response.text


async def test_a_rejected_answer_of_a_cached_key_still_reports_the_limits(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = await new_key(client, auth, api, ratelimits=[one_per_10s()])
    answers = [await verify(client, auth, key=key["key"]) for _ in range(3)]

    assert [a["code"] for a in answers] == ["VALID", "RATE_LIMITED", "RATE_LIMITED"]
    assert all(a["ratelimits"][0]["reset_at"] == "2027-01-15T08:00:10.000Z" for a in answers)
    assert answers[0]["ratelimits"][0]["reset_at"] > NOW
