"""``POST /v1/tokens``, ``POST /v1/tokens/verify`` and ``GET /.well-known/jwks.json`` over the ASGI app (SPEC T1,
T2): where the key may come from, the problems of bad requests, IP allowlists, scoped root keys. The real server
and PyJWT are in tests/e2e/test_tokens.py."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers

Json = dict[str, Any]


async def new_key(client: httpx.AsyncClient, auth: Headers, api: Json, **fields: Any) -> Json:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def test_the_key_comes_in_a_header_never_in_the_url_and_one_at_a_time(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = (await new_key(client, auth, api))["key"]
    other = (await new_key(client, auth, api))["key"]

    assert (await client.post("/v1/tokens", headers={"X-API-Key": key})).status_code == 200
    assert (await client.post("/v1/tokens", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    in_url = await client.post("/v1/tokens", params={"api_key": key})
    assert (in_url.status_code, in_url.json()["code"]) == (400, "unknown_parameter")
    assert key not in in_url.text
    two = await client.post("/v1/tokens", headers={"X-API-Key": key, "Authorization": f"Bearer {other}"})
    assert (two.status_code, two.json()["code"]) == (401, "ambiguous_credentials")


async def test_bad_bodies_are_problems(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = (await new_key(client, auth, api, permissions=["docs.read"]))["key"]
    headers = {"X-API-Key": key}
    for body in ({"ttl_s": 0}, {"ttl_s": 3601}, {"permissions": ["docs.*"]}, {"permissions": "docs.read"}, {"x": 1}):
        answer = await client.post("/v1/tokens", json=body, headers=headers)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    broken = await client.post("/v1/tokens", content=b"{", headers=headers)
    assert broken.status_code == 400


async def test_an_ip_allowlist_applies_to_the_caller(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = (await new_key(client, auth, api, ip_allowlist=["203.0.113.0/24"]))["key"]

    refused = await client.post("/v1/tokens", headers={"X-API-Key": key})

    assert (refused.status_code, refused.json()["code"]) == (403, "ip_not_allowed")


async def test_a_token_is_checked_by_root_keys_of_its_api_only(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json, grant: Grant, clock: ManualClock
) -> None:
    key = await new_key(client, auth, api, owner_id="alice", permissions=["a", "b"])
    issued = (await client.post("/v1/tokens", json={"ttl_s": 60}, headers={"X-API-Key": key["key"]})).json()
    assert issued["scope"] == "a b"
    kid = jwt.get_unverified_header(issued["token"])["kid"]
    body = {"token": issued["token"]}

    mine = await client.post("/v1/tokens/verify", json=body, headers=await grant(f"api.{api['id']}.keys.verify"))
    theirs = await client.post(
        "/v1/tokens/verify", json=body, headers=await grant(f"api.{other_api['id']}.keys.verify")
    )
    none = await client.post("/v1/tokens/verify", json=body, headers=await grant("keys.read"))
    anonymous = await client.post("/v1/tokens/verify", json=body)

    assert mine.json() == {
        "valid": True,
        "code": "VALID",
        "key_id": key["id"],
        "api_id": api["id"],
        "sub": "alice",
        "scope": "a b",
        "exp": int(clock.now()) + 60,
        "expires_at": issued["expires_at"],
        "iat": int(clock.now()),
        "jti": mine.json()["jti"],
        "kid": kid,
    }
    assert (theirs.json()["valid"], theirs.json()["code"], theirs.json()["key_id"]) == (False, "NOT_FOUND", None)
    assert none.status_code == 403
    assert anonymous.status_code == 401
    clock.advance(60)
    expired = await client.post("/v1/tokens/verify", json=body, headers=auth)
    assert (expired.json()["valid"], expired.json()["code"]) == (False, "EXPIRED")


async def test_the_jwks_is_public_and_cacheable(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    assert (await client.get("/.well-known/jwks.json")).json() == {"keys": []}
    key = (await new_key(client, auth, api))["key"]
    await client.post("/v1/tokens", headers={"X-API-Key": key})

    answer = await client.get("/.well-known/jwks.json")

    assert answer.headers["cache-control"] == "public, max-age=300"
    [jwk] = answer.json()["keys"]
    assert sorted(jwk) == ["alg", "crv", "kid", "kty", "use", "x"]
    assert jwt.PyJWK(jwk).algorithm_name == "EdDSA"
