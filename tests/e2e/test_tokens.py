"""API tokens with a real server (SPEC T1, T2): PyJWT's ``PyJWKClient`` checks issued tokens offline against the
server's ``/.well-known/jwks.json``; ``keystile tokens rotate`` while the server runs keeps old tokens valid and
makes new ones carry the new ``kid``; a revoked key's tokens answer ``REVOKED`` online; refusals are problems; a
server without its master key issues no token and goes on verifying keys."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from keystile import Client
from keystile.schemas import ApiCreate, TokenRequest, TokenVerifyRequest

from .server import ROOT_KEY_RE, cli, serve

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'keystile.db'}"
        return
    url: str = request.getfixturevalue("fresh_pg_url")
    yield url


def offline(url: str, token: str, **options: Any) -> dict[str, Any]:
    """The token's claims as a service checks them without calling Keystile: PyJWT against the JWKS."""
    signing_key = jwt.PyJWKClient(f"{url}/.well-known/jwks.json", cache_keys=False).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, signing_key, algorithms=["EdDSA"], issuer=url, options={"require": ["exp", "iat", "jti"]}, **options
    )
    return claims


def test_tokens_issued_checked_offline_and_online_rotated_and_revoked(database: str, tmp_path: Path) -> None:
    env = {"KEYSTILE_DATA_DIR": str(tmp_path / "data"), "KEYSTILE_DATABASE_URL": database}
    [root_key] = ROOT_KEY_RE.findall(cli("init", workdir=tmp_path, env=env))
    server = serve(tmp_path, env)
    cli_env = {**env, "KEYSTILE_TOKEN_ISSUER": server.url}
    client = Client(server.url, root_key)
    try:
        auth = {"Authorization": f"Bearer {root_key}"}
        api_id = client.create_api(ApiCreate(name="weather")).id
        spec = {"owner_id": "alice", "permissions": ["forecast.read", "forecast.write"], "credits": {"remaining": 3}}
        created = httpx.post(f"{server.url}/v1/apis/{api_id}/keys", json=spec, headers=auth).json()
        key, key_id = created["key"], created["id"]

        # Issued through the client (the key as Bearer) and by X-API-Key; each issue spends a credit.
        issued = client.issue_token(key, TokenRequest(ttl_s=600, permissions=["forecast.read"]))
        assert (issued.token_type, issued.expires_in, issued.scope) == ("Bearer", 600, "forecast.read")
        by_header = httpx.post(f"{server.url}/v1/tokens", json={}, headers={"X-API-Key": key})
        assert by_header.status_code == 200, by_header.text
        assert by_header.headers["cache-control"] == "no-store"
        assert by_header.json()["scope"] == "forecast.read forecast.write"

        claims = offline(server.url, issued.token)
        assert claims["iss"] == server.url
        assert (claims["sub"], claims["key_id"], claims["api_id"], claims["scope"]) == (
            "alice",
            key_id,
            api_id,
            "forecast.read",
        )
        assert claims["exp"] - claims["iat"] == 600
        header = jwt.get_unverified_header(issued.token)
        assert (header["alg"], header["typ"]) == ("EdDSA", "JWT")
        jwks = httpx.get(f"{server.url}/.well-known/jwks.json")
        assert jwks.headers["cache-control"] == "public, max-age=300"
        [published] = jwks.json()["keys"]
        assert published == {**published, "kid": header["kid"], "kty": "OKP", "crv": "Ed25519", "use": "sig"}
        assert "d" not in published

        verify = client.verify_token(TokenVerifyRequest(issued.token))
        assert (verify.valid, verify.code, verify.key_id, verify.sub, verify.kid) == (
            True,
            "VALID",
            key_id,
            "alice",
            header["kid"],
        )

        # A token fails after its exp, offline and online.
        short = httpx.post(f"{server.url}/v1/tokens", json={"ttl_s": 1}, headers={"X-API-Key": key}).json()
        time.sleep(2.1)
        with pytest.raises(jwt.ExpiredSignatureError):
            offline(server.url, short["token"])
        assert client.verify_token(TokenVerifyRequest(short["token"])).code == "EXPIRED"

        # Out of credits (three spent): no token.
        spent = httpx.post(f"{server.url}/v1/tokens", json={}, headers={"Authorization": f"Bearer {key}"})
        assert (spent.status_code, spent.json()["code"]) == (429, "usage_exceeded")
        assert "retry-after" in spent.headers
        httpx.post(f"{server.url}/v1/keys/{key_id}/credits", json={"op": "set", "amount": None}, headers=auth)

        # Rotation while the server runs: old tokens still verify, new ones carry the new kid.
        rotated = json.loads(cli("tokens", "rotate", "--json", workdir=tmp_path, env=cli_env))
        assert rotated["retired"] == [header["kid"]]
        time.sleep(1.2)  # the server reads its signing keys again after a second
        fresh = client.issue_token(key)
        assert jwt.get_unverified_header(fresh.token)["kid"] == rotated["kid"]
        assert offline(server.url, fresh.token)["key_id"] == key_id
        assert offline(server.url, issued.token)["key_id"] == key_id, "the old key is published until its tokens expire"
        assert [k["kid"] for k in httpx.get(f"{server.url}/.well-known/jwks.json").json()["keys"]] == [
            rotated["kid"],
            header["kid"],
        ]
        keys = json.loads(cli("tokens", "keys", "--json", workdir=tmp_path, env=cli_env))
        assert [(k["kid"], k["state"]) for k in keys] == [(rotated["kid"], "current"), (header["kid"], "retired")]
        audit = httpx.get(f"{server.url}/v1/audit", params={"action": "signing_key.rotate"}, headers=auth).json()
        assert [entry["target"] for entry in audit["items"]] == [rotated["kid"]]

        # The CLI issues and checks tokens too (the key from stdin).
        from_cli = cli("tokens", "issue", "--ttl", "60", workdir=tmp_path, env=cli_env, stdin=key + "\n").strip()
        assert key not in from_cli
        assert offline(server.url, from_cli)["exp"] - offline(server.url, from_cli)["iat"] == 60
        assert cli("tokens", "verify", from_cli, workdir=tmp_path, env=cli_env).startswith(f"VALID {key_id}")

        # Revoked: online checks answer REVOKED at once (offline checks hold until exp, by design).
        client.revoke_key(key_id)
        assert client.verify_token(TokenVerifyRequest(fresh.token)).code == "REVOKED"
        assert offline(server.url, fresh.token)["key_id"] == key_id
        refused = httpx.post(f"{server.url}/v1/tokens", json={}, headers={"X-API-Key": key})
        assert (refused.status_code, refused.json()["code"]) == (401, "invalid_key")
        assert refused.headers["www-authenticate"].startswith("Bearer")

        # Other refusals.
        other = httpx.post(f"{server.url}/v1/apis/{api_id}/keys", json={"permissions": ["a"]}, headers=auth).json()
        scoped = httpx.post(f"{server.url}/v1/tokens", json={"permissions": ["b"]}, headers={"X-API-Key": other["key"]})
        assert (scoped.status_code, scoped.json()["code"]) == (403, "invalid_scope")
        unknown = httpx.post(f"{server.url}/v1/tokens", json={}, headers={"X-API-Key": key[:-2] + "zz"})
        assert (unknown.status_code, unknown.json()) == (401, {**unknown.json(), "code": "invalid_key"})
        assert unknown.json()["detail"] == refused.json()["detail"], "unknown and revoked keys look alike"
        missing = httpx.post(f"{server.url}/v1/tokens", json={})
        assert (missing.status_code, missing.json()["code"]) == (401, "missing_key")
        too_long = httpx.post(f"{server.url}/v1/tokens", json={"ttl_s": 3601}, headers={"X-API-Key": other["key"]})
        assert too_long.status_code == 400
        garbage = client.verify_token(TokenVerifyRequest("not.a.token"))
        assert (garbage.valid, garbage.code) == (False, "NOT_FOUND")

        logs = httpx.get(f"{server.url}/v1/logs", params={"key_id": key_id}, headers=auth).json()["items"]
        assert logs
        assert all("token" in event["tags"] for event in logs)
    finally:
        client.close()
        assert server.stop() == 0
    output = server.stdout() + server.stderr()
    assert key not in output


def test_a_server_without_its_master_key_issues_no_token_and_verifies_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"KEYSTILE_DATA_DIR": str(data), "KEYSTILE_DATABASE_URL": f"sqlite:///{data / 'keystile.db'}"}
    [root_key] = ROOT_KEY_RE.findall(cli("init", workdir=tmp_path, env=env))
    kid = json.loads(cli("tokens", "rotate", "--json", workdir=tmp_path, env=env))["kid"]
    other = tmp_path / "other.key"
    cli("master-key", "create", str(other), workdir=tmp_path, env=env)
    server = serve(tmp_path, {**env, "KEYSTILE_MASTER_KEY_FILE": str(other)})
    try:
        auth = {"Authorization": f"Bearer {root_key}"}
        api_id = httpx.post(f"{server.url}/v1/apis", json={"name": "a"}, headers=auth).json()["id"]
        key = httpx.post(f"{server.url}/v1/apis/{api_id}/keys", json={}, headers=auth).json()["key"]

        refused = httpx.post(f"{server.url}/v1/tokens", json={}, headers={"X-API-Key": key})
        assert (refused.status_code, refused.json().get("code")) == (503, "master_key_unavailable"), refused.text
        assert [k["kid"] for k in httpx.get(f"{server.url}/.well-known/jwks.json").json()["keys"]] == [kid]
        verified = httpx.post(f"{server.url}/v1/keys/verify", json={"key": key}, headers=auth).json()
        assert verified["code"] == "VALID"
    finally:
        assert server.stop() == 0
