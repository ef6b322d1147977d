"""``GET /v1/audit``: every management action over HTTP is audited with who, from where."""

from __future__ import annotations

from typing import Any

import httpx

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]


async def test_http_actions_are_audited_with_the_callers_address_and_agent(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    response = await client.get("/v1/audit", params={"action": "api.create"}, headers=auth)

    assert response.status_code == 200
    [entry] = response.json()["items"]
    assert entry["target"] == api["id"]
    assert entry["actor"].startswith("rk_")
    assert entry["ip"] == "127.0.0.1"
    assert entry["user_agent"].startswith("python-httpx")


async def test_filters_by_target_and_time(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    clock.advance(3600)
    key = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()
    await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)

    by_target = (await client.get("/v1/audit", params={"target": key["id"]}, headers=auth)).json()["items"]
    since = (await client.get("/v1/audit", params={"since": key["created_at"]}, headers=auth)).json()["items"]
    until = (await client.get("/v1/audit", params={"until": key["created_at"]}, headers=auth)).json()["items"]

    assert [entry["action"] for entry in by_target] == ["key.revoke", "key.create"]
    assert {entry["action"] for entry in since} == {"key.revoke", "key.create"}
    assert "key.create" not in {entry["action"] for entry in until}


async def test_pages_with_a_cursor(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    await client.post("/v1/apis", json={"name": "second"}, headers=auth)

    first = (await client.get("/v1/audit", params={"limit": 1}, headers=auth)).json()
    second = (await client.get("/v1/audit", params={"limit": 1, "cursor": first["next_cursor"]}, headers=auth)).json()

    assert first["items"][0]["seq"] > second["items"][0]["seq"]


async def test_a_time_that_is_not_rfc3339_names_the_parameter(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.get("/v1/audit", params={"since": "yesterday"}, headers=auth)

    assert problem(response, 400, "invalid_parameter")["field"] == "since"


async def test_a_bad_cursor_is_400(client: httpx.AsyncClient, auth: Headers) -> None:
    assert problem(await client.get("/v1/audit?cursor=abc", headers=auth), 400, "invalid_cursor")["field"] == "cursor"


async def test_needs_a_root_key(client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/audit"), 401, "missing_root_key")


async def test_needs_audit_read(client: httpx.AsyncClient, grant: Grant) -> None:
    problem(await client.get("/v1/audit", headers=await grant("apis.*", "keys.*")), 403, "insufficient_permissions")
