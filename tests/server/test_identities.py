"""Identities: ``/v1/identities`` and ``/v1/identities/{owner_id}`` (SPEC K5)."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]
ACME = {
    "owner_id": "acme",
    "meta": {"plan": "pro"},
    "ratelimits": [{"name": "api", "limit": 100, "duration_ms": 60_000}],
    "credits": {"remaining": 1000, "refill": {"amount": 1000, "interval": "monthly", "day": 1}},
}


async def create(client: httpx.AsyncClient, auth: Headers, body: Json) -> Json:
    response = await client.post("/v1/identities", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def test_create_answers_201_with_the_identity(client: httpx.AsyncClient, auth: Headers) -> None:
    body = await create(client, auth, ACME)

    assert body["id"].startswith("idn_")
    assert body["owner_id"] == "acme"
    assert body["meta"] == {"plan": "pro"}
    assert body["ratelimits"] == [{"name": "api", "limit": 100, "duration_ms": 60_000, "auto_apply": True}]
    assert body["credits"] == {"remaining": 1000, "refill": {"amount": 1000, "interval": "monthly", "day": 1}}
    assert body["created_at"] == body["updated_at"] == "2027-01-15T08:00:00.000Z"


async def test_get_patch_and_delete(client: httpx.AsyncClient, auth: Headers) -> None:
    created = await create(client, auth, ACME)

    shown = await client.get("/v1/identities/acme", headers=auth)
    assert shown.status_code == 200
    assert shown.json() == created

    patched = await client.patch(
        "/v1/identities/acme",
        json={"meta": {"seats": 3}, "credits": {"refill": None}, "ratelimits": None},
        headers={**auth, "Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["meta"] == {"plan": "pro", "seats": 3}
    assert patched.json()["credits"] == {"remaining": 1000, "refill": None}
    assert patched.json()["ratelimits"] == []

    deleted = await client.delete("/v1/identities/acme", headers=auth)
    assert deleted.status_code == 204
    problem(await client.get("/v1/identities/acme", headers=auth), 404, "identity_not_found")
    problem(await client.delete("/v1/identities/acme", headers=auth), 404, "identity_not_found")


async def test_a_second_identity_for_an_owner_is_409(client: httpx.AsyncClient, auth: Headers) -> None:
    await create(client, auth, {"owner_id": "acme"})

    problem(await client.post("/v1/identities", json={"owner_id": "acme"}, headers=auth), 409, "identity_exists")


async def test_bad_bodies_name_the_field(client: httpx.AsyncClient, auth: Headers) -> None:
    missing = await client.post("/v1/identities", json={"meta": {}}, headers=auth)
    assert problem(missing, 400, "invalid_request")["field"] == "/owner_id"

    await create(client, auth, {"owner_id": "acme"})
    renamed = await client.patch("/v1/identities/acme", json={"owner_id": "other"}, headers=auth)
    assert problem(renamed, 400, "invalid_request")["field"] == "/owner_id"
    twice = await client.patch(
        "/v1/identities/acme", json={"ratelimits": [{"name": "a", "limit": 1, "duration_ms": 1}] * 2}, headers=auth
    )
    assert problem(twice, 400, "duplicate_ratelimit")["field"] == "/ratelimits"
    text = await client.patch("/v1/identities/acme", content=b"{}", headers={**auth, "Content-Type": "text/plain"})
    problem(text, 415, "unsupported_media_type")


async def test_an_owner_id_that_looks_like_a_key_is_not_echoed(
    client: httpx.AsyncClient, auth: Headers, key: Json
) -> None:
    response = await client.get(f"/v1/identities/{key['key']}", headers=auth)

    problem(response, 404, "identity_not_found")
    assert key["key"] not in response.text


async def test_identities_need_their_permissions(client: httpx.AsyncClient, auth: Headers, grant: Grant) -> None:
    await create(client, auth, {"owner_id": "acme"})
    reader = await grant("identities.read")
    keys_only = await grant("keys.*")

    assert (await client.get("/v1/identities/acme", headers=reader)).status_code == 200
    problem(
        await client.post("/v1/identities", json={"owner_id": "b"}, headers=reader), 403, "insufficient_permissions"
    )
    problem(await client.delete("/v1/identities/acme", headers=reader), 403, "insufficient_permissions")
    problem(await client.get("/v1/identities/acme", headers=keys_only), 403, "insufficient_permissions")
    problem(await client.get("/v1/identities/acme"), 401, "missing_root_key")


async def test_keys_of_the_owner_share_the_identity_credits(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json
) -> None:
    await create(client, auth, {"owner_id": "acme", "credits": {"remaining": 2}})
    keys = []
    for target in (api, other_api):
        response = await client.post(f"/v1/apis/{target['id']}/keys", json={"owner_id": "acme"}, headers=auth)
        keys.append(response.json()["key"])

    answers = [(await client.post("/v1/keys/verify", json={"key": k}, headers=auth)).json() for k in keys * 2]

    assert [(a["code"], a["credits"]) for a in answers] == [
        ("VALID", {"remaining": 1}),
        ("VALID", {"remaining": 0}),
        ("USAGE_EXCEEDED", {"remaining": 0}),
        ("USAGE_EXCEEDED", {"remaining": 0}),
    ]
    identity = (await client.get("/v1/identities/acme", headers=auth)).json()
    assert identity["credits"]["remaining"] == 0
