"""Roles: ``/v1/apis/{api_id}/roles`` and ``/v1/apis/{api_id}/roles/{name}``."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]


async def test_post_creates_201_then_replaces_200(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    path = f"/v1/apis/{api['id']}/roles"

    created = await client.post(path, json={"name": "editor", "permissions": ["docs.read"]}, headers=auth)
    replaced = await client.post(path, json={"name": "editor", "permissions": ["docs.*"]}, headers=auth)

    assert created.status_code == 201
    assert created.json()["permissions"] == ["docs.read"]
    assert replaced.status_code == 200
    assert replaced.json()["permissions"] == ["docs.*"]
    assert replaced.json()["created_at"] == created.json()["created_at"]


async def test_get_lists_the_roles(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    path = f"/v1/apis/{api['id']}/roles"
    await client.post(path, json={"name": "b", "permissions": ["x"]}, headers=auth)
    await client.post(path, json={"name": "a", "permissions": []}, headers=auth)

    response = await client.get(path, headers=auth)

    assert response.status_code == 200
    assert [role["name"] for role in response.json()["items"]] == ["a", "b"]


async def test_delete_answers_204_and_takes_the_role_off_keys(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    await client.post(f"/v1/apis/{api['id']}/roles", json={"name": "editor"}, headers=auth)
    key = (await client.post(f"/v1/apis/{api['id']}/keys", json={"roles": ["editor"]}, headers=auth)).json()

    response = await client.delete(f"/v1/apis/{api['id']}/roles/editor", headers=auth)

    assert response.status_code == 204
    assert (await client.get(f"/v1/keys/{key['id']}", headers=auth)).json()["roles"] == []
    problem(await client.delete(f"/v1/apis/{api['id']}/roles/editor", headers=auth), 404, "role_not_found")


async def test_a_bad_role_names_the_field(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.post(f"/v1/apis/{api['id']}/roles", json={"name": "no spaces"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/name"


async def test_a_bad_permission_in_a_role_is_400(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.post(
        f"/v1/apis/{api['id']}/roles", json={"name": "r", "permissions": ["no spaces"]}, headers=auth
    )

    problem(response, 400, "invalid_permission")


async def test_every_role_route_needs_a_root_key(client: httpx.AsyncClient, api: Json) -> None:
    path = f"/v1/apis/{api['id']}/roles"
    problem(await client.post(path, json={"name": "r"}), 401, "missing_root_key")
    problem(await client.get(path), 401, "missing_root_key")
    problem(await client.delete(f"{path}/r"), 401, "missing_root_key")


async def test_a_root_key_without_api_permissions_is_forbidden(
    client: httpx.AsyncClient, grant: Grant, api: Json
) -> None:
    keys_only = await grant("keys.*")
    path = f"/v1/apis/{api['id']}/roles"
    problem(await client.post(path, json={"name": "r"}, headers=keys_only), 403, "insufficient_permissions")
    problem(await client.get(path, headers=keys_only), 403, "insufficient_permissions")
    problem(await client.delete(f"{path}/r", headers=keys_only), 403, "insufficient_permissions")


async def test_a_root_key_scoped_to_another_api_gets_404(
    client: httpx.AsyncClient, auth: Headers, grant: Grant, api: Json, other_api: Json
) -> None:
    path = f"/v1/apis/{api['id']}/roles"
    await client.post(path, json={"name": "r"}, headers=auth)
    elsewhere = await grant(f"api.{other_api['id']}.apis.*")
    problem(await client.post(path, json={"name": "r"}, headers=elsewhere), 404, "not_found")
    problem(await client.get(path, headers=elsewhere), 404, "not_found")
    problem(await client.delete(f"{path}/r", headers=elsewhere), 404, "not_found")
