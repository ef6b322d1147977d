"""Root keys: ``/v1/root-keys`` and ``/v1/root-keys/{root_key_id}/revoke``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Grant
from .helpers import Headers, bearer, problem

Json = dict[str, Any]


async def test_create_answers_201_with_the_plain_root_key(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/root-keys", json={"name": "deploy", "permissions": ["keys.verify"]}, headers=auth)

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("rk_")
    assert body["key"].startswith("ks_root_")
    assert body["permissions"] == ["keys.verify"]
    listed = await client.get("/v1/root-keys", headers=auth)
    assert body["key"] not in listed.text


async def test_a_new_root_key_works_with_its_permissions(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    created = await client.post("/v1/root-keys", json={"permissions": [f"api.{api['id']}.apis.read"]}, headers=auth)
    headers = bearer(created.json()["key"])

    assert (await client.get(f"/v1/apis/{api['id']}", headers=headers)).status_code == 200
    problem(await client.post("/v1/apis", json={"name": "x"}, headers=headers), 403, "insufficient_permissions")


async def test_list_shows_root_keys_without_their_secret(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.get("/v1/root-keys", headers=auth)

    assert response.status_code == 200
    [first] = response.json()["items"]
    assert first["permissions"] == ["*"]
    assert "key" not in first
    assert response.json()["next_cursor"] is None


async def test_revoke_answers_the_record_and_the_key_stops_working(client: httpx.AsyncClient, auth: Headers) -> None:
    created = (await client.post("/v1/root-keys", json={"permissions": ["apis.read"]}, headers=auth)).json()

    response = await client.post(f"/v1/root-keys/{created['id']}/revoke", headers=auth)
    again = await client.post(f"/v1/root-keys/{created['id']}/revoke", headers=auth)

    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    assert again.json() == response.json()
    problem(await client.get("/v1/apis", headers=bearer(created["key"])), 401, "invalid_root_key")


async def test_create_without_permissions_names_the_field(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/root-keys", json={"permissions": []}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/permissions"


async def test_create_with_an_unknown_permission_is_400(client: httpx.AsyncClient, auth: Headers) -> None:
    problem(
        await client.post("/v1/root-keys", json={"permissions": ["keys.fly"]}, headers=auth), 400, "invalid_permission"
    )


async def test_list_with_a_bad_limit_names_it(client: httpx.AsyncClient, auth: Headers) -> None:
    assert (
        problem(await client.get("/v1/root-keys?limit=-1", headers=auth), 400, "invalid_parameter")["field"] == "limit"
    )


async def test_every_root_key_route_needs_a_root_key(client: httpx.AsyncClient) -> None:
    problem(await client.post("/v1/root-keys", json={"permissions": ["*"]}), 401, "missing_root_key")
    problem(await client.get("/v1/root-keys"), 401, "missing_root_key")
    problem(await client.post("/v1/root-keys/rk_x/revoke"), 401, "missing_root_key")


async def test_a_root_key_without_root_keys_write_is_forbidden(client: httpx.AsyncClient, grant: Grant) -> None:
    other = await grant("apis.*", "keys.*")
    problem(
        await client.post("/v1/root-keys", json={"permissions": ["apis.read"]}, headers=other),
        403,
        "insufficient_permissions",
    )
    problem(await client.get("/v1/root-keys", headers=other), 403, "insufficient_permissions")
    problem(await client.post("/v1/root-keys/rk_x/revoke", headers=other), 403, "insufficient_permissions")


async def test_a_root_key_cannot_grant_what_it_lacks(client: httpx.AsyncClient, grant: Grant, api: Json) -> None:
    limited = await grant("root_keys.write", f"api.{api['id']}.keys.read")

    allowed = await client.post("/v1/root-keys", json={"permissions": [f"api.{api['id']}.keys.read"]}, headers=limited)
    refused = await client.post("/v1/root-keys", json={"permissions": ["keys.read"]}, headers=limited)

    assert allowed.status_code == 201
    problem(refused, 403, "insufficient_permissions")


async def test_revoking_an_unknown_or_non_root_key_is_404(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()

    problem(await client.post("/v1/root-keys/rk_nothing/revoke", headers=auth), 404, "root_key_not_found")
    problem(await client.post(f"/v1/root-keys/{key['id']}/revoke", headers=auth), 404, "root_key_not_found")


EVERY_BACKEND = pytest.mark.parametrize(
    "database_url", ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


async def _listed(client: httpx.AsyncClient, headers: Headers) -> set[str]:
    response = await client.get("/v1/root-keys", headers=headers)
    assert response.status_code == 200
    assert response.json()["next_cursor"] is None
    return {item["id"] for item in response.json()["items"]}


@EVERY_BACKEND
async def test_a_lesser_root_key_neither_sees_nor_revokes_a_stronger_one(
    client: httpx.AsyncClient, auth: Headers
) -> None:
    """SPEC K6: it answers as for a root key that does not exist, so the stronger key's existence is not leaked."""
    first_id = (await client.get("/v1/root-keys", headers=auth)).json()["items"][0]["id"]
    lesser = (
        await client.post("/v1/root-keys", json={"permissions": ["root_keys.write", "keys.read"]}, headers=auth)
    ).json()
    weaker = (await client.post("/v1/root-keys", json={"permissions": ["keys.read"]}, headers=auth)).json()
    stronger = (await client.post("/v1/root-keys", json={"permissions": ["keys.write"]}, headers=auth)).json()

    assert await _listed(client, bearer(lesser["key"])) == {lesser["id"], weaker["id"]}
    for target in (first_id, stronger["id"]):
        refused = problem(
            await client.post(f"/v1/root-keys/{target}/revoke", headers=bearer(lesser["key"])),
            404,
            "root_key_not_found",
        )
        unknown = problem(
            await client.post("/v1/root-keys/rk_0000000000000000000000/revoke", headers=bearer(lesser["key"])),
            404,
            "root_key_not_found",
        )
        assert refused["detail"] == unknown["detail"].replace("rk_0000000000000000000000", target)
    assert await _listed(client, auth) == {first_id, lesser["id"], weaker["id"], stronger["id"]}
    # 403 (it lacks root_keys.write), not 401: the stronger key was not revoked.
    assert (await client.get("/v1/root-keys", headers=bearer(stronger["key"]))).status_code == 403
    assert (await client.get("/v1/apis", headers=auth)).status_code == 200

    revoked = await client.post(f"/v1/root-keys/{weaker['id']}/revoke", headers=bearer(lesser["key"]))
    assert revoked.status_code == 200
    own = await client.post(f"/v1/root-keys/{lesser['id']}/revoke", headers=bearer(lesser["key"]))
    assert own.status_code == 200
    assert own.json()["revoked_at"] is not None


@EVERY_BACKEND
async def test_a_global_permission_covers_the_same_permission_scoped_to_an_api(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    holder = (
        await client.post("/v1/root-keys", json={"permissions": ["root_keys.write", "keys.write"]}, headers=auth)
    ).json()
    scoped = (
        await client.post("/v1/root-keys", json={"permissions": [f"api.{api['id']}.keys.write"]}, headers=auth)
    ).json()
    wider = (await client.post("/v1/root-keys", json={"permissions": [f"api.{api['id']}.*"]}, headers=auth)).json()

    assert await _listed(client, bearer(holder["key"])) == {holder["id"], scoped["id"]}
    problem(
        await client.post(f"/v1/root-keys/{wider['id']}/revoke", headers=bearer(holder["key"])),
        404,
        "root_key_not_found",
    )
    assert (await client.post(f"/v1/root-keys/{scoped['id']}/revoke", headers=bearer(holder["key"]))).status_code == 200
