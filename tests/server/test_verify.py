"""``POST /v1/keys/verify`` (SPEC V1, V2, V3): every code reachable without limits, and its errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]
NULL_FIELDS = ("key_id", "api_id", "name", "owner_id", "meta", "permissions", "roles", "expires_at", "credits")


async def verify(client: httpx.AsyncClient, headers: Headers, **body: Any) -> Json:
    response = await client.post("/v1/keys/verify", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result: Json = response.json()
    return result


async def new_key(client: httpx.AsyncClient, auth: Headers, api: Json, **fields: Any) -> Json:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


def assert_not_found(result: Json) -> None:
    assert result["valid"] is False
    assert result["code"] == "NOT_FOUND"
    assert all(result[name] is None for name in (*NULL_FIELDS, "ratelimits"))


# -- VALID ---------------------------------------------------------------------------------------------------


async def test_a_good_key_is_valid_with_what_is_known_about_it(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    await client.post(
        f"/v1/apis/{api['id']}/roles", json={"name": "editor", "permissions": ["docs.write"]}, headers=auth
    )
    key = await new_key(
        client,
        auth,
        api,
        name="ci",
        owner_id="user_1",
        meta={"plan": "pro"},
        permissions=["docs.read"],
        roles=["editor"],
        expires_at="2030-01-01T00:00:00Z",
        credits={"remaining": 7},
    )

    result = await verify(client, auth, key=key["key"], api_id=api["id"], permissions="docs.read AND docs.write")

    assert result == {
        "valid": True,
        "code": "VALID",
        "key_id": key["id"],
        "api_id": api["id"],
        "name": "ci",
        "owner_id": "user_1",
        "meta": {"plan": "pro"},
        "permissions": ["docs.read", "docs.write"],
        "roles": ["editor"],
        "expires_at": "2030-01-01T00:00:00.000Z",
        "credits": {"remaining": 6},  # a verification spends one credit by default (SPEC L3)
        "ratelimits": [],
    }


async def test_unlimited_credits_are_null(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    result = await verify(client, auth, key=key["key"])

    assert result["code"] == "VALID"
    assert result["credits"] is None


async def test_a_repeated_answer_is_the_same_and_follows_updates(
    client: httpx.AsyncClient, auth: Headers, key: Json
) -> None:
    first = await verify(client, auth, key=key["key"])
    second = await verify(client, auth, key=key["key"])
    await client.patch(f"/v1/keys/{key['id']}", json={"name": "renamed", "meta": {"v": 2}}, headers=auth)
    third = await verify(client, auth, key=key["key"])

    assert first == second
    assert third["name"] == "renamed"
    assert third["meta"] == {"v": 2}


async def test_a_root_key_with_only_keys_verify_may_verify(client: httpx.AsyncClient, grant: Grant, key: Json) -> None:
    verifier = await grant("keys.verify")

    assert (await verify(client, verifier, key=key["key"]))["code"] == "VALID"


# -- NOT_FOUND -----------------------------------------------------------------------------------------------


async def test_an_unknown_key_is_not_found(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    assert_not_found(await verify(client, auth, key="ks_" + "A" * 38))
    assert_not_found(await verify(client, auth, key="something else entirely"))


async def test_one_wrong_character_is_not_found(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    plain = key["key"]
    middle = len(plain) // 2
    typo = plain[:middle] + ("a" if plain[middle] != "a" else "b") + plain[middle + 1 :]

    assert_not_found(await verify(client, auth, key=typo))


async def test_a_key_of_another_api_is_not_found(
    client: httpx.AsyncClient, auth: Headers, key: Json, other_api: Json
) -> None:
    assert_not_found(await verify(client, auth, key=key["key"], api_id=other_api["id"]))


async def test_a_root_key_scoped_to_another_api_sees_not_found(
    client: httpx.AsyncClient, grant: Grant, key: Json, other_api: Json
) -> None:
    elsewhere = await grant(f"api.{other_api['id']}.keys.verify")

    assert_not_found(await verify(client, elsewhere, key=key["key"]))


async def test_a_root_key_is_not_found_as_an_api_key(
    client: httpx.AsyncClient, auth: Headers, root: tuple[Any, str]
) -> None:
    assert_not_found(await verify(client, auth, key=root[1]))
    assert_not_found(await verify(client, auth, key=root[1], api_id="api_root"))


# -- REVOKED, DISABLED, EXPIRED ------------------------------------------------------------------------------


async def test_a_revoked_key_is_revoked(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    assert (await verify(client, auth, key=key["key"]))["code"] == "VALID"

    await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)
    result = await verify(client, auth, key=key["key"])

    assert result["valid"] is False
    assert result["code"] == "REVOKED"
    assert result["key_id"] == key["id"]


async def test_a_disabled_key_is_disabled_until_enabled(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api, enabled=False)

    assert (await verify(client, auth, key=key["key"]))["code"] == "DISABLED"
    await client.patch(f"/v1/keys/{key['id']}", json={"enabled": True}, headers=auth)
    assert (await verify(client, auth, key=key["key"]))["code"] == "VALID"


async def test_a_key_past_its_expiry_is_expired(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    key = await new_key(client, auth, api, expires_at="2027-01-15T09:00:00Z")  # the clock starts at 08:00
    assert (await verify(client, auth, key=key["key"]))["code"] == "VALID"

    clock.advance(3600)

    result = await verify(client, auth, key=key["key"])
    assert result["code"] == "EXPIRED"
    assert result["expires_at"] == "2027-01-15T09:00:00.000Z"


# -- FORBIDDEN -----------------------------------------------------------------------------------------------


async def test_an_ip_outside_the_keys_allowlist_is_forbidden(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = await new_key(client, auth, api, ip_allowlist=["10.0.0.0/8"])

    assert (await verify(client, auth, key=key["key"], ip="10.1.2.3"))["code"] == "VALID"
    assert (await verify(client, auth, key=key["key"], ip="192.168.1.1"))["code"] == "FORBIDDEN"
    assert (await verify(client, auth, key=key["key"]))["code"] == "FORBIDDEN"


async def test_an_ip_outside_the_apis_allowlist_is_forbidden(
    client: httpx.AsyncClient, auth: Headers, api: Json, key: Json
) -> None:
    await client.patch(f"/v1/apis/{api['id']}", json={"ip_allowlist": ["2001:db8::/32"]}, headers=auth)

    assert (await verify(client, auth, key=key["key"], ip="2001:db8::1"))["code"] == "VALID"
    assert (await verify(client, auth, key=key["key"], ip="2001:db9::1"))["code"] == "FORBIDDEN"
    assert (await verify(client, auth, key=key["key"]))["code"] == "FORBIDDEN"


async def test_an_ip_that_is_not_an_address_is_400(client: httpx.AsyncClient, auth: Headers, key: Json) -> None:
    response = await client.post("/v1/keys/verify", json={"key": key["key"], "ip": "localhost"}, headers=auth)

    assert problem(response, 400, "invalid_ip")["field"] == "/ip"


# -- INSUFFICIENT_PERMISSIONS and queries ----------------------------------------------------------------------


async def test_a_query_the_key_does_not_satisfy_is_insufficient(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = await new_key(client, auth, api, permissions=["docs.*"])

    assert (await verify(client, auth, key=key["key"], permissions="docs.read or admin"))["code"] == "VALID"
    result = await verify(client, auth, key=key["key"], permissions="docs.read AND admin")
    assert result["code"] == "INSUFFICIENT_PERMISSIONS"
    assert result["valid"] is False


@pytest.mark.parametrize(("query", "position"), [("docs.read AND", 13), ("(a OR b", 7), ("a & b", 2)])
async def test_a_query_that_does_not_parse_is_400_with_its_position(
    client: httpx.AsyncClient, auth: Headers, key: Json, query: str, position: int
) -> None:
    response = await client.post("/v1/keys/verify", json={"key": key["key"], "permissions": query}, headers=auth)

    assert problem(response, 400, "invalid_permission_query")["position"] == position


async def test_an_earlier_failure_wins(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api, enabled=False, ip_allowlist=["10.0.0.0/8"])
    await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)

    assert (await verify(client, auth, key=key["key"], permissions="nothing"))["code"] == "REVOKED"


# -- request errors ------------------------------------------------------------------------------------------


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient, auth: Headers) -> None:
    problem(await client.post("/v1/keys/verify", content=b"key=abc", headers=auth), 400, "invalid_json")


async def test_a_body_without_a_key_names_the_field(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/keys/verify", json={"api_id": "api_x"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/key"


async def test_an_unknown_field_is_400(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/keys/verify", json={"key": "k", "permission": "a"}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/permission"


async def test_verify_needs_a_root_key(client: httpx.AsyncClient, key: Json) -> None:
    response = await client.post("/v1/keys/verify", json={"key": key["key"]})

    problem(response, 401, "missing_root_key")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_api_key_is_not_a_root_key(client: httpx.AsyncClient, key: Json) -> None:
    response = await client.post(
        "/v1/keys/verify", json={"key": key["key"]}, headers={"Authorization": f"Bearer {key['key']}"}
    )

    problem(response, 401, "invalid_root_key")


async def test_a_root_key_without_keys_verify_is_forbidden(client: httpx.AsyncClient, grant: Grant, key: Json) -> None:
    response = await client.post("/v1/keys/verify", json={"key": key["key"]}, headers=await grant("keys.read"))

    problem(response, 403, "insufficient_permissions")


async def test_errors_echo_a_sane_request_id(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.post("/v1/keys/verify", content=b"{", headers={**auth, "X-Request-Id": "trace-42.a_b"})

    assert problem(response, 400, "invalid_json")["request_id"] == "trace-42.a_b"
    assert response.headers["x-request-id"] == "trace-42.a_b"


async def test_other_methods_are_405(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.get("/v1/keys/verify", headers=auth)

    problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
