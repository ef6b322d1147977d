"""``POST /oauth/token``, ``POST /oauth/introspect`` and the RFC 8414 metadata over the ASGI app (SPEC T3): bad
requests get RFC 6749 errors or problems, never a 500; failed client authentication counts toward the per-address
limit of ``/v1/auth``. Authlib against a real server is in tests/e2e/test_oauth.py."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import jwt

from keystile.core.clock import ManualClock

from .conftest import Grant
from .helpers import Headers

Json = dict[str, Any]
GRANT = {"grant_type": "client_credentials"}


async def new_key(client: httpx.AsyncClient, auth: Headers, api: Json, **fields: Any) -> Json:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"


async def test_a_token_in_the_rfc_9068_profile(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api, permissions=["a", "b"])

    answer = await client.post("/oauth/token", data={**GRANT, "scope": "b"}, auth=(key["id"], key["key"]))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 900, "b")
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["aud"], claims["client_id"], claims["api_id"], claims["scope"]) == (
        api["id"],
        key["id"],
        api["id"],
        "b",
    )


async def test_bad_requests_are_oauth_errors_or_problems(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api)
    basic = (key["id"], key["key"])
    post = {"client_id": key["id"], "client_secret": key["key"]}

    assert_oauth_error(await client.post("/oauth/token", json={**GRANT, **post}), 400, "invalid_request")
    repeated = b"grant_type=client_credentials&grant_type=client_credentials"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_oauth_error(
        await client.post("/oauth/token", content=repeated, headers=form, auth=basic), 400, "invalid_request"
    )
    assert_oauth_error(await client.post("/oauth/token", data={**GRANT, **post}, auth=basic), 400, "invalid_request")
    assert_oauth_error(await client.post("/oauth/token", data={}, auth=basic), 400, "invalid_request")
    assert_oauth_error(await client.post("/oauth/token", data=GRANT), 401, "invalid_client")
    assert_oauth_error(
        await client.post("/oauth/token", data={**GRANT, "scope": "a*"}, auth=basic), 400, "invalid_scope"
    )
    assert_oauth_error(
        await client.post("/oauth/token", data={"grant_type": "password", **post}), 400, "unsupported_grant_type"
    )
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
        answer = await client.post("/oauth/token", data=GRANT, headers={"Authorization": header})
        assert_oauth_error(answer, 401, "invalid_client")
    odd = await client.post("/oauth/token", content="grant_type=é".encode(), headers=form, auth=basic)
    assert_oauth_error(odd, 400, "invalid_request")
    nul = await client.post("/oauth/token", content=b"grant_type=%00", headers=form, auth=basic)
    assert_oauth_error(nul, 400, "invalid_request")
    many = "&".join(f"x{i}=1" for i in range(100)).encode()
    assert_oauth_error(
        await client.post("/oauth/token", content=many, headers=form, auth=basic), 400, "invalid_request"
    )
    huge = await client.post("/oauth/token", content=b"a=" + b"x" * 5_000_000, headers=form, auth=basic)
    assert huge.status_code == 413
    assert huge.headers["content-type"] == "application/problem+json"
    long_id = await client.post("/oauth/token", data={**GRANT, "client_id": "k" * 10_000, "client_secret": "x"})
    assert_oauth_error(long_id, 401, "invalid_client")
    # Nothing here holds the key.
    assert key["key"] not in (await client.post("/oauth/token", data={**GRANT, **post, "scope": "zz"})).text


async def test_a_disabled_key_is_an_invalid_client(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api)
    disabled = await client.patch(f"/v1/keys/{key['id']}", json={"enabled": False}, headers=auth)
    assert disabled.status_code == 200, disabled.text

    answer = await client.post("/oauth/token", data=GRANT, auth=(key["id"], key["key"]))

    assert_oauth_error(answer, 401, "invalid_client")
    assert answer.headers["www-authenticate"] == 'Basic realm="keystile"'


async def test_a_rate_limited_key_is_answered_429(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api, credits={"remaining": 1})
    assert (await client.post("/oauth/token", data=GRANT, auth=(key["id"], key["key"]))).status_code == 200

    spent = await client.post("/oauth/token", data=GRANT, auth=(key["id"], key["key"]))

    assert (spent.status_code, spent.json()["code"]) == (429, "usage_exceeded")


async def test_failed_client_authentication_counts_toward_the_auth_failure_limit(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    key = await new_key(client, auth, api)
    for _ in range(100):  # the default: 100 failures a minute per address
        wrong = await client.post("/oauth/token", data=GRANT, auth=(key["id"], "ks_" + "y" * 38))
        assert wrong.status_code == 401

    guess = await client.get(f"/v1/auth?api_id={api['id']}", headers={"Authorization": "Bearer ks_" + "z" * 38})
    assert (guess.status_code, guess.headers["x-keystile-code"]) == (429, "too_many_failures")
    # One limit: blocked at /v1/auth is blocked here, even with the right secret.
    shared = await client.post("/oauth/token", data=GRANT, auth=(key["id"], key["key"]))
    assert (shared.status_code, shared.json()["code"]) == (429, "too_many_failures")
    assert shared.headers["retry-after"] == "1"
    clock.advance(60)
    assert (await client.post("/oauth/token", data=GRANT, auth=(key["id"], key["key"]))).status_code == 200


async def test_introspection_needs_keys_verify(
    client: httpx.AsyncClient, auth: Headers, api: Json, grant: Grant
) -> None:
    key = await new_key(client, auth, api, owner_id="alice")
    token = (await client.post("/oauth/token", data=GRANT, auth=(key["id"], key["key"]))).json()["access_token"]

    active = await client.post("/oauth/introspect", data={"token": token}, headers=auth)
    refused = await client.post("/oauth/introspect", data={"token": token}, headers=await grant("keys.read"))
    junk = await client.post("/oauth/introspect", data={"token": "not.a.token"}, headers=auth)
    missing = await client.post("/oauth/introspect", data={}, headers=auth)
    as_json = await client.post("/oauth/introspect", json={"token": token}, headers=auth)

    assert active.json()["active"] is True
    assert (active.json()["client_id"], active.json()["sub"], active.json()["aud"]) == (key["id"], "alice", api["id"])
    assert refused.status_code == 403
    assert junk.json() == {"active": False}
    assert_oauth_error(missing, 400, "invalid_request")
    assert_oauth_error(as_json, 400, "invalid_request")


async def test_the_metadata_document(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()

    assert metadata["token_endpoint"].endswith("/oauth/token")
    assert metadata["introspection_endpoint"].endswith("/oauth/introspect")
    assert metadata["jwks_uri"].endswith("/.well-known/jwks.json")
    assert metadata["grant_types_supported"] == ["client_credentials"]
