"""``/v1/apis`` and ``/v1/apis/{api_id}``."""

from __future__ import annotations

from typing import Any

import httpx

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]


# -- 2xx -----------------------------------------------------------------------------------------------------


async def test_create_answers_201_with_the_api(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post(
        "/v1/apis", json={"name": "billing", "prefix": "bill_live", "ip_allowlist": ["10.1.2.3/8"]}, headers=auth
    )

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"].startswith("api_")
    assert body["name"] == "billing"
    assert body["prefix"] == "bill_live"
    assert body["ip_allowlist"] == ["10.0.0.0/8"]
    assert body["created_at"].endswith("Z")


async def test_get_answers_the_api(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.get(f"/v1/apis/{api['id']}", headers=auth)

    assert response.status_code == 200
    assert response.json() == api


async def test_list_pages_newest_first(client: httpx.AsyncClient, auth: Headers, clock: ManualClock) -> None:
    names = []
    for number in range(3):
        clock.advance(1)
        names.append(f"api {number}")
        assert (await client.post("/v1/apis", json={"name": names[-1]}, headers=auth)).status_code == 201

    first = (await client.get("/v1/apis", params={"limit": 2}, headers=auth)).json()
    second = (await client.get("/v1/apis", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth)).json()

    assert [item["name"] for item in first["items"]] == ["api 2", "api 1"]
    assert [item["name"] for item in second["items"]] == ["api 0"]
    assert second["next_cursor"] is None


async def test_list_shows_only_the_apis_a_scoped_root_key_may_read(
    client: httpx.AsyncClient, grant: Grant, api: Json, other_api: Json
) -> None:
    scoped = await grant(f"api.{api['id']}.apis.read")

    body = (await client.get("/v1/apis", headers=scoped)).json()

    assert [item["id"] for item in body["items"]] == [api["id"]]


async def test_patch_merges_and_null_resets_to_the_default(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    await client.patch(f"/v1/apis/{api['id']}", json={"max_key_age_days": 30}, headers=auth)

    response = await client.patch(
        f"/v1/apis/{api['id']}",
        content=b'{"name": "renamed", "max_key_age_days": null}',
        headers={**auth, "Content-Type": "application/merge-patch+json"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "renamed"
    assert body["max_key_age_days"] is None
    assert body["prefix"] == api["prefix"]


async def test_delete_answers_204_and_the_api_is_gone(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.delete(f"/v1/apis/{api['id']}", headers=auth)

    assert response.status_code == 204
    assert response.content == b""
    problem(await client.get(f"/v1/apis/{api['id']}", headers=auth), 404, "api_not_found")


# -- 400 -----------------------------------------------------------------------------------------------------


async def test_create_without_a_name_names_the_field(client: httpx.AsyncClient, auth: Headers) -> None:
    body = problem(await client.post("/v1/apis", json={"prefix": "ks"}, headers=auth), 400, "invalid_request")

    assert body["field"] == "/name"


async def test_create_with_an_unknown_field_names_it(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/apis", json={"name": "x", "prefx": "ks"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/prefx"


async def test_create_with_the_reserved_root_prefix_is_refused(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/apis", json={"name": "x", "prefix": "ks_root"}, headers=auth)

    assert problem(response, 400, "invalid_prefix")["field"] == "/prefix"


async def test_create_accepts_a_recoverable_api(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/apis", json={"name": "vault", "recoverable": True}, headers=auth)

    assert response.status_code == 201
    assert response.json()["recoverable"] is True


async def test_create_accepts_recoverable_false(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/apis", json={"name": "plain", "recoverable": False}, headers=auth)

    assert response.status_code == 201
    assert response.json()["recoverable"] is False


async def test_patch_turns_recoverable_keys_on_and_off(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.patch(f"/v1/apis/{api['id']}", json={"recoverable": True}, headers=auth)

    assert response.status_code == 200
    assert response.json()["recoverable"] is True
    accepted = await client.patch(f"/v1/apis/{api['id']}", json={"recoverable": False}, headers=auth)
    assert accepted.status_code == 200
    assert accepted.json()["recoverable"] is False


async def test_malformed_json_is_invalid_json(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/apis", content=b'{"name": ', headers=auth)

    problem(response, 400, "invalid_json")


async def test_list_with_a_bad_limit_names_the_parameter(client: httpx.AsyncClient, auth: Headers) -> None:
    assert problem(await client.get("/v1/apis?limit=0", headers=auth), 400, "invalid_limit")["field"] == "limit"
    assert problem(await client.get("/v1/apis?limit=ten", headers=auth), 400, "invalid_parameter")["field"] == "limit"


async def test_list_with_an_unknown_parameter_names_it(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.get("/v1/apis?limt=5", headers=auth)

    assert problem(response, 400, "unknown_parameter")["field"] == "limt"


async def test_patch_with_a_bad_value_names_the_field(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.patch(f"/v1/apis/{api['id']}", json={"max_key_age_days": 0}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/max_key_age_days"


async def test_patch_that_is_not_an_object_is_refused(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    problem(await client.patch(f"/v1/apis/{api['id']}", json=["name"], headers=auth), 400, "invalid_request")


async def test_patch_in_another_media_type_is_415(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.patch(
        f"/v1/apis/{api['id']}",
        content=b"name=x",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )

    problem(response, 415, "unsupported_media_type")


# -- 401 -----------------------------------------------------------------------------------------------------


async def test_every_api_route_needs_a_root_key(client: httpx.AsyncClient, api: Json) -> None:
    path = f"/v1/apis/{api['id']}"
    for response in [
        await client.post("/v1/apis", json={"name": "x"}),
        await client.get("/v1/apis"),
        await client.get(path),
        await client.patch(path, json={"name": "y"}),
        await client.delete(path),
    ]:
        problem(response, 401, "missing_root_key")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_root_key_is_invalid(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/apis", headers={"Authorization": "Bearer ks_root_not_a_real_key"})

    problem(response, 401, "invalid_root_key")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_root_key_is_invalid(client: httpx.AsyncClient, auth: Headers, grant: Grant) -> None:
    reader = await grant("apis.read")
    assert (await client.get("/v1/apis", headers=reader)).status_code == 200
    token = reader["Authorization"].removeprefix("Bearer ")
    listed = (await client.get("/v1/root-keys", headers=auth)).json()["items"]
    [reader_id] = [item["id"] for item in listed if token.startswith(item["start"])]

    await client.post(f"/v1/root-keys/{reader_id}/revoke", headers=auth)

    problem(await client.get("/v1/apis", headers=reader), 401, "invalid_root_key")


# -- 403 / 404 -----------------------------------------------------------------------------------------------


async def test_a_root_key_without_api_permissions_is_forbidden(
    client: httpx.AsyncClient, grant: Grant, api: Json
) -> None:
    auditor = await grant("audit.read")
    path = f"/v1/apis/{api['id']}"
    for response in [
        await client.post("/v1/apis", json={"name": "x"}, headers=auditor),
        await client.get("/v1/apis", headers=auditor),
        await client.get(path, headers=auditor),
        await client.patch(path, json={"name": "y"}, headers=auditor),
        await client.delete(path, headers=auditor),
    ]:
        problem(response, 403, "insufficient_permissions")


async def test_a_reader_may_not_write(client: httpx.AsyncClient, grant: Grant, api: Json) -> None:
    reader = await grant("apis.read")

    problem(
        await client.patch(f"/v1/apis/{api['id']}", json={"name": "y"}, headers=reader), 403, "insufficient_permissions"
    )


async def test_a_root_key_scoped_to_another_api_gets_404(
    client: httpx.AsyncClient, grant: Grant, api: Json, other_api: Json
) -> None:
    elsewhere = await grant(f"api.{other_api['id']}.apis.read", f"api.{other_api['id']}.apis.write")
    path = f"/v1/apis/{api['id']}"
    for response in [
        await client.get(path, headers=elsewhere),
        await client.patch(path, json={"name": "y"}, headers=elsewhere),
        await client.delete(path, headers=elsewhere),
    ]:
        problem(response, 404, "not_found")


async def test_an_unknown_api_is_404(client: httpx.AsyncClient, auth: Headers) -> None:
    problem(await client.get("/v1/apis/api_nothing", headers=auth), 404, "api_not_found")
    problem(await client.delete("/v1/apis/api_nothing", headers=auth), 404, "api_not_found")
