"""``POST /v1/ratelimit`` (SPEC L4): limits not tied to a key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]
LOGIN = {"namespace": "login", "identifier": "203.0.113.7", "limit": 3, "duration_ms": 60_000}


async def ratelimit(client: httpx.AsyncClient, headers: Headers, **body: Any) -> Json:
    response = await client.post("/v1/ratelimit", json={**LOGIN, **body}, headers=headers)
    assert response.status_code == 200, response.text
    result: Json = response.json()
    return result


async def test_exactly_the_limit_passes_and_the_answer_says_when_it_is_full_again(
    client: httpx.AsyncClient, auth: Headers, clock: ManualClock
) -> None:
    answers = [await ratelimit(client, auth) for _ in range(10)]

    assert [a["success"] for a in answers] == [True] * 3 + [False] * 7
    assert answers[0] == {"success": True, "limit": 3, "remaining": 2, "reset_at": "2027-01-15T08:00:20.000Z"}
    assert answers[3] == {"success": False, "limit": 3, "remaining": 0, "reset_at": "2027-01-15T08:01:00.000Z"}

    clock.advance(20)
    assert [(await ratelimit(client, auth))["success"] for _ in range(2)] == [True, False]


async def test_identifiers_are_limited_separately_and_cost_counts(client: httpx.AsyncClient, auth: Headers) -> None:
    assert (await ratelimit(client, auth, cost=3))["remaining"] == 0
    assert (await ratelimit(client, auth))["success"] is False
    assert (await ratelimit(client, auth, identifier="198.51.100.1"))["remaining"] == 2
    assert (await ratelimit(client, auth, namespace="signup"))["remaining"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"namespace": "a:b"}, "/namespace"),
        ({"identifier": ""}, "/identifier"),
        ({"limit": 0}, "/limit"),
        ({"duration_ms": 0}, "/duration_ms"),
        ({"cost": -1}, "/cost"),
        ({"extra": True}, "/extra"),
    ],
)
async def test_a_bad_body_names_the_field(client: httpx.AsyncClient, auth: Headers, body: Json, field: str) -> None:
    response = await client.post("/v1/ratelimit", json={**LOGIN, **body}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == field


async def test_it_needs_keys_verify_for_every_api(client: httpx.AsyncClient, grant: Grant, api: Json) -> None:
    problem(await client.post("/v1/ratelimit", json=LOGIN), 401, "missing_root_key")
    for permissions in (("keys.read",), (f"api.{api['id']}.keys.verify",)):
        headers = await grant(*permissions)
        response = await client.post("/v1/ratelimit", json=LOGIN, headers=headers)
        problem(response, 403, "insufficient_permissions")

    assert (await ratelimit(client, await grant("keys.verify")))["success"] is True
