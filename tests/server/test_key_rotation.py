"""``POST /v1/keys/{key_id}/reroll`` (SPEC R2), ``POST /v1/keys/{key_id}/credits`` (L3) and the rotation policy
(R3: ``stale`` marker and filter, ``expire_stale_after_days``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]
DAY_S = 86_400


async def new_key(client: httpx.AsyncClient, auth: Headers, api: Json, **fields: Any) -> Json:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def verify(client: httpx.AsyncClient, auth: Headers, key: str) -> Json:
    result: Json = (await client.post("/v1/keys/verify", json={"key": key}, headers=auth)).json()
    return result


async def credits(client: httpx.AsyncClient, auth: Headers, key_id: str, body: Json) -> httpx.Response:
    return await client.post(f"/v1/keys/{key_id}/credits", json=body, headers=auth)


# -- reroll --------------------------------------------------------------------------------------------------------


async def test_reroll_answers_201_with_the_new_key_once(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    old = await new_key(
        client, auth, api, name="ci", owner_id="acme", permissions=["docs.read"], credits={"remaining": 9}
    )

    response = await client.post(
        f"/v1/keys/{old['id']}/reroll",
        json={"grace_period_ms": 60_000, "expires_at": "2030-01-01T00:00:00Z"},
        headers=auth,
    )

    assert response.status_code == 201, response.text
    new = response.json()
    assert new["key"].startswith(new["start"])
    assert new["id"] != old["id"]
    assert new["rotated_from"] == old["id"]
    assert (new["name"], new["owner_id"], new["permissions"]) == ("ci", "acme", ["docs.read"])
    assert new["credits"] == {"remaining": 9, "refill": None}
    assert new["expires_at"] == "2030-01-01T00:00:00.000Z"
    assert new["stale"] is False
    retired = (await client.get(f"/v1/keys/{old['id']}", headers=auth)).json()
    assert retired["rotated_to"] == new["id"]
    assert retired["expires_at"] == "2027-01-15T08:01:00.000Z"
    assert new["key"] not in (await client.get(f"/v1/keys/{new['id']}", headers=auth)).text

    assert (await verify(client, auth, old["key"]))["credits"] == {"remaining": 8}
    assert (await verify(client, auth, new["key"]))["credits"] == {"remaining": 7}
    clock.advance(60)
    assert (await verify(client, auth, old["key"]))["code"] == "EXPIRED"
    assert (await verify(client, auth, new["key"]))["credits"] == {"remaining": 6}


async def test_reroll_without_a_body_field_has_no_grace(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    response = await client.post(f"/v1/keys/{key['id']}/reroll", json={}, headers=auth)

    assert response.status_code == 201
    assert (await verify(client, auth, key["key"]))["code"] == "EXPIRED"
    assert (await verify(client, auth, response.json()["key"]))["code"] == "VALID"


async def test_reroll_of_a_revoked_or_rerolled_key_is_409(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    revoked = await new_key(client, auth, api)
    await client.post(f"/v1/keys/{revoked['id']}/revoke", headers=auth)
    rerolled = await new_key(client, auth, api)
    assert (await client.post(f"/v1/keys/{rerolled['id']}/reroll", json={}, headers=auth)).status_code == 201

    problem(await client.post(f"/v1/keys/{revoked['id']}/reroll", json={}, headers=auth), 409, "key_revoked")
    problem(await client.post(f"/v1/keys/{rerolled['id']}/reroll", json={}, headers=auth), 409, "key_rotated")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"grace_period_ms": -1}, "/grace_period_ms"), ({"expires_at": "tomorrow"}, "/expires_at"), ({"x": 1}, "/x")],
)
async def test_reroll_with_a_bad_body_names_the_field(
    client: httpx.AsyncClient, auth: Headers, key: Json, body: Json, field: str
) -> None:
    response = await client.post(f"/v1/keys/{key['id']}/reroll", json=body, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == field


async def test_reroll_needs_keys_write_and_an_existing_key(
    client: httpx.AsyncClient, auth: Headers, grant: Grant, key: Json
) -> None:
    reader = await grant("keys.read")
    problem(await client.post(f"/v1/keys/{key['id']}/reroll", json={}, headers=reader), 403, "insufficient_permissions")
    problem(await client.post("/v1/keys/key_unknown/reroll", json={}, headers=auth), 404, "key_not_found")


# -- credits -------------------------------------------------------------------------------------------------------


async def test_credit_operations_answer_the_key_record(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api, credits={"remaining": 10})

    added = await credits(client, auth, key["id"], {"op": "add", "amount": 5})
    assert added.status_code == 200, added.text
    assert added.json()["id"] == key["id"]
    assert added.json()["credits"] == {"remaining": 15, "refill": None}
    subtracted = await credits(client, auth, key["id"], {"op": "subtract", "amount": 100})
    assert subtracted.json()["credits"]["remaining"] == 0
    assert (await verify(client, auth, key["key"]))["code"] == "USAGE_EXCEEDED"

    unlimited = await credits(client, auth, key["id"], {"op": "set", "amount": None})
    assert unlimited.json()["credits"] is None
    assert (await verify(client, auth, key["key"]))["credits"] is None
    problem(await credits(client, auth, key["id"], {"op": "add", "amount": 1}), 409, "credits_unlimited")

    again = await credits(client, auth, key["id"], {"op": "set", "amount": 3})
    assert again.json()["credits"] == {"remaining": 3, "refill": None}
    assert (await verify(client, auth, key["key"]))["credits"] == {"remaining": 2}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"op": "add", "amount": None}, "/amount"),
        ({"op": "multiply", "amount": 2}, "/op"),
        ({"op": "add", "amount": -1}, "/amount"),
        ({"op": "add"}, "/amount"),
    ],
)
async def test_a_bad_credit_operation_names_the_field(
    client: httpx.AsyncClient, auth: Headers, key: Json, body: Json, field: str
) -> None:
    assert problem(await credits(client, auth, key["id"], body), 400, "invalid_request")["field"] == field


async def test_credit_operations_need_keys_write(client: httpx.AsyncClient, grant: Grant, key: Json) -> None:
    reader = await grant("keys.read")
    problem(await credits(client, reader, key["id"], {"op": "set", "amount": 1}), 403, "insufficient_permissions")
    problem(await credits(client, {}, key["id"], {"op": "set", "amount": 1}), 401, "missing_root_key")


# -- rotation policy -------------------------------------------------------------------------------------------------


async def test_keys_past_the_maximum_age_are_stale_in_answers_and_filters(
    client: httpx.AsyncClient, auth: Headers, clock: ManualClock
) -> None:
    api = (await client.post("/v1/apis", json={"name": "r", "max_key_age_days": 30}, headers=auth)).json()
    old = await new_key(client, auth, api)
    clock.advance(31 * DAY_S)
    young = await new_key(client, auth, api)

    assert (await client.get(f"/v1/keys/{old['id']}", headers=auth)).json()["stale"] is True
    assert (await client.get(f"/v1/keys/{young['id']}", headers=auth)).json()["stale"] is False
    listed = (await client.get(f"/v1/apis/{api['id']}/keys", headers=auth)).json()["items"]
    assert [(item["id"], item["stale"]) for item in listed] == [(young["id"], False), (old["id"], True)]
    stale = (await client.get(f"/v1/apis/{api['id']}/keys?stale=true", headers=auth)).json()["items"]
    assert [item["id"] for item in stale] == [old["id"]]
    fresh = (await client.get(f"/v1/apis/{api['id']}/keys?stale=false", headers=auth)).json()["items"]
    assert [item["id"] for item in fresh] == [young["id"]]


async def test_an_api_can_expire_its_stale_keys(client: httpx.AsyncClient, auth: Headers, clock: ManualClock) -> None:
    created = await client.post(
        "/v1/apis", json={"name": "r", "max_key_age_days": 30, "expire_stale_after_days": 0}, headers=auth
    )
    api = created.json()
    assert api["expire_stale_after_days"] == 0
    key = await new_key(client, auth, api)

    clock.advance(30 * DAY_S)
    result = await verify(client, auth, key["key"])
    assert result["code"] == "EXPIRED"
    assert result["expires_at"] == "2027-02-14T08:00:00.000Z", "the expiry the policy gave it"

    patched = await client.patch(f"/v1/apis/{api['id']}", json={"expire_stale_after_days": None}, headers=auth)
    assert patched.json()["expire_stale_after_days"] is None
    assert (await verify(client, auth, key["key"]))["code"] == "VALID"


async def test_expire_stale_after_days_needs_max_key_age_days(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/apis", json={"name": "r", "expire_stale_after_days": 5}, headers=auth)

    assert problem(response, 400, "invalid_rotation_policy")["field"] == "/expire_stale_after_days"
