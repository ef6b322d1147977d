"""Keys: ``/v1/apis/{api_id}/keys``, ``/bulk`` and ``/v1/keys/{key_id}`` (create, list, show, update, revoke,
delete)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]


# -- create --------------------------------------------------------------------------------------------------


async def test_create_answers_201_with_the_record_and_the_plain_key(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    response = await client.post(
        f"/v1/apis/{api['id']}/keys",
        json={
            "name": "ci",
            "owner_id": "user_1",
            "meta": {"plan": "pro"},
            "permissions": ["docs.read"],
            "expires_at": "2030-01-01T01:00:00+01:00",
            "credits": {"remaining": 10},
        },
        headers=auth,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("key_")
    assert body["key"].startswith("ks_")
    assert body["key"].startswith(body["start"])
    assert body["expires_at"] == "2030-01-01T00:00:00.000Z"
    assert body["credits"] == {"remaining": 10, "refill": None}
    assert body["meta"] == {"plan": "pro"}


async def test_the_plain_key_is_shown_only_by_create(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    shown = await client.get(f"/v1/keys/{key['id']}", headers=auth)
    listed = await client.get(f"/v1/apis/{key['api_id']}/keys", headers=auth)

    assert "key" not in shown.json()
    assert key["key"] not in shown.text
    assert key["key"] not in listed.text


async def test_bulk_creates_every_key_at_once(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.post(
        f"/v1/apis/{api['id']}/keys/bulk", json={"keys": [{"name": "a"}, {"name": "b"}]}, headers=auth
    )

    assert response.status_code == 201
    items = response.json()["items"]
    assert [item["name"] for item in items] == ["a", "b"]
    assert all(item["key"].startswith("ks_") for item in items)


async def test_bulk_is_all_or_nothing_and_names_the_failing_index(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    response = await client.post(
        f"/v1/apis/{api['id']}/keys/bulk",
        json={"keys": [{"name": "a"}, {"name": "b", "roles": ["no-such-role"]}]},
        headers=auth,
    )

    body = problem(response, 400, "unknown_role")
    assert body["index"] == 1
    assert body["field"] == "/keys/1/roles"
    listed = (await client.get(f"/v1/apis/{api['id']}/keys", headers=auth)).json()
    assert listed["items"] == []


async def test_bulk_schema_error_names_the_index(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.post(
        f"/v1/apis/{api['id']}/keys/bulk", json={"keys": [{"name": "a"}, {"name": ""}]}, headers=auth
    )

    body = problem(response, 400, "invalid_request")
    assert body["index"] == 1
    assert body["field"] == "/keys/1/name"


async def test_create_with_a_bad_field_names_it(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json={"permissions": "docs.read"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/permissions"


async def test_create_with_an_expiry_without_offset_is_refused(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json={"expires_at": "2030-01-01T00:00:00"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/expires_at"


async def test_create_in_an_unknown_api_is_404(client: httpx.AsyncClient, auth: Headers) -> None:
    problem(await client.post("/v1/apis/api_nothing/keys", json={}, headers=auth), 404, "api_not_found")


# -- list ----------------------------------------------------------------------------------------------------


async def test_list_pages_newest_first(client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock) -> None:
    for name in ("a", "b", "c"):
        clock.advance(1)
        await client.post(f"/v1/apis/{api['id']}/keys", json={"name": name}, headers=auth)
    path = f"/v1/apis/{api['id']}/keys"

    first = (await client.get(path, params={"limit": 2}, headers=auth)).json()
    second = (await client.get(path, params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth)).json()

    assert [item["name"] for item in first["items"]] == ["c", "b"]
    assert [item["name"] for item in second["items"]] == ["a"]
    assert second["next_cursor"] is None


async def test_list_filters(client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock) -> None:
    path = f"/v1/apis/{api['id']}/keys"
    await client.post(path, json={"name": "alpha", "owner_id": "u1"}, headers=auth)
    await client.post(path, json={"name": "beta", "owner_id": "u2", "enabled": False}, headers=auth)
    soon = (await client.post(path, json={"name": "gamma", "expires_at": "2027-01-15T09:00:00Z"}, headers=auth)).json()
    revoked = (await client.post(path, json={"name": "delta"}, headers=auth)).json()
    await client.post(f"/v1/keys/{revoked['id']}/revoke", headers=auth)
    clock.advance(7200)

    async def names(**params: str) -> set[str]:
        response = await client.get(path, params=params, headers=auth)
        assert response.status_code == 200, response.text
        return {item["name"] for item in response.json()["items"]}

    assert await names(owner_id="u1") == {"alpha"}
    assert await names(enabled="false") == {"beta"}
    assert await names(expired="true") == {soon["name"]}
    assert await names(revoked="true") == {"delta"}
    assert await names(revoked="false", expired="false", enabled="true") == {"alpha"}
    assert await names(q="ALP") == {"alpha"}
    assert await names(stale="true") == set()  # no rotation policy: nothing is stale


async def test_list_marks_stale_keys_by_the_apis_rotation_policy(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    await client.patch(f"/v1/apis/{api['id']}", json={"max_key_age_days": 30}, headers=auth)
    path = f"/v1/apis/{api['id']}/keys"
    await client.post(path, json={"name": "old"}, headers=auth)
    clock.advance(31 * 86400)
    await client.post(path, json={"name": "new"}, headers=auth)

    stale = (await client.get(path, params={"stale": "true"}, headers=auth)).json()["items"]
    fresh = (await client.get(path, params={"stale": "false"}, headers=auth)).json()["items"]

    assert [item["name"] for item in stale] == ["old"]
    assert [item["name"] for item in fresh] == ["new"]


@pytest.mark.parametrize(
    ("query", "field"), [("enabled=maybe", "enabled"), ("limit=5000", "limit"), ("owner=x", "owner")]
)
async def test_list_with_a_bad_parameter_names_it(
    client: httpx.AsyncClient, auth: Headers, api: Json, query: str, field: str
) -> None:
    response = await client.get(f"/v1/apis/{api['id']}/keys?{query}", headers=auth)

    assert response.status_code == 400
    assert response.json()["field"] == field


# -- show, update --------------------------------------------------------------------------------------------


async def test_get_answers_the_key(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    response = await client.get(f"/v1/keys/{key['id']}", headers=auth)

    assert response.status_code == 200
    assert response.json() == {name: value for name, value in key.items() if name != "key"}


async def test_patch_is_a_merge_patch(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    created = (
        await client.post(
            f"/v1/apis/{api['id']}/keys", json={"name": "n", "meta": {"a": 1, "b": 2}, "owner_id": "u"}, headers=auth
        )
    ).json()

    response = await client.patch(
        f"/v1/keys/{created['id']}",
        json={"meta": {"b": None, "c": 3}, "owner_id": None, "enabled": False},
        headers={**auth, "Content-Type": "application/merge-patch+json"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["meta"] == {"a": 1, "c": 3}
    assert body["owner_id"] is None
    assert body["enabled"] is False
    assert body["name"] == "n"


async def test_patch_with_a_bad_value_names_the_field(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    response = await client.patch(f"/v1/keys/{key['id']}", json={"enabled": "yes"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/enabled"


async def test_patch_with_an_unknown_field_names_it(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    response = await client.patch(f"/v1/keys/{key['id']}", json={"nmae": "x"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/nmae"


# -- revoke, delete ------------------------------------------------------------------------------------------


async def test_revoke_answers_the_record_and_again_unchanged(
    client: httpx.AsyncClient, auth: Headers, key: Json, clock: ManualClock
) -> None:
    first = await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)
    clock.advance(60)
    again = await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)

    assert first.status_code == 200
    assert first.json()["revoked_at"] is not None
    assert again.status_code == 200
    assert again.json() == first.json()


async def test_delete_answers_204_and_the_key_is_gone(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    response = await client.delete(f"/v1/keys/{key['id']}", headers=auth)

    assert response.status_code == 204
    problem(await client.get(f"/v1/keys/{key['id']}", headers=auth), 404, "key_not_found")
    problem(await client.delete(f"/v1/keys/{key['id']}", headers=auth), 404, "key_not_found")


# -- 401, 403, 404 -------------------------------------------------------------------------------------------


def _requests(api: Json, key: Json) -> list[tuple[str, str, Any]]:
    return [
        ("POST", f"/v1/apis/{api['id']}/keys", {}),
        ("POST", f"/v1/apis/{api['id']}/keys/bulk", {"keys": [{}]}),
        ("GET", f"/v1/apis/{api['id']}/keys", None),
        ("GET", f"/v1/keys/{key['id']}", None),
        ("PATCH", f"/v1/keys/{key['id']}", {"name": "x"}),
        ("POST", f"/v1/keys/{key['id']}/revoke", None),
        ("DELETE", f"/v1/keys/{key['id']}", None),
    ]


async def test_every_key_route_needs_a_root_key(client: httpx.AsyncClient, api: Json, key: Json) -> None:
    for method, path, body in _requests(api, key):
        response = await client.request(method, path, json=body)
        problem(response, 401, "missing_root_key")


async def test_a_root_key_without_key_permissions_is_forbidden(
    client: httpx.AsyncClient, grant: Grant, api: Json, key: Json
) -> None:
    apis_only = await grant("apis.read", "apis.write")
    for method, path, body in _requests(api, key):
        response = await client.request(method, path, json=body, headers=apis_only)
        problem(response, 403, "insufficient_permissions")


async def test_a_key_reader_may_not_write(client: httpx.AsyncClient, grant: Grant, key: Json) -> None:
    reader = await grant("keys.read")

    assert (await client.get(f"/v1/keys/{key['id']}", headers=reader)).status_code == 200
    problem(await client.post(f"/v1/keys/{key['id']}/revoke", headers=reader), 403, "insufficient_permissions")


async def test_a_root_key_scoped_to_another_api_gets_404(
    client: httpx.AsyncClient, grant: Grant, api: Json, other_api: Json, key: Json
) -> None:
    elsewhere = await grant(f"api.{other_api['id']}.keys.*")
    for method, path, body in _requests(api, key):
        response = await client.request(method, path, json=body, headers=elsewhere)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_root_key_scoped_to_the_api_may_manage_its_keys(
    client: httpx.AsyncClient, grant: Grant, api: Json, key: Json
) -> None:
    scoped = await grant(f"api.{api['id']}.keys.*")

    assert (await client.get(f"/v1/keys/{key['id']}", headers=scoped)).status_code == 200
    assert (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=scoped)).status_code == 201
