"""API tokens where keys go (SPEC T3, I2, V5): Authlib's OAuth 2.0 client (``client_secret_basic`` and
``client_secret_post``) gets tokens from a real server's ``/oauth/token`` and calls the FastAPI example
(``require_key``, served by granian) with them, checked offline against the JWKS, online, or against the database;
the integrations' token checks (JWKS cache, rotation, forged and expired tokens, audience) against a real server;
tokens through ``/v1/auth``, and failed token and key attempts counting toward the per-address failure limit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystile.errors import Forbidden, Unauthenticated
from keystile.integrations import RemoteVerifier, TokenVerifier, authenticate

from .server import BIN, REPO, Server, cli, free_port, serve

with warnings.catch_warnings():
    # Authlib warns on import that it would rather use httpx2 (not released here); its httpx client works.
    import authlib.deprecate  # noqa: F401 (its filter first, so that the one below wins)

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.e2e


@dataclass
class Deployment:
    workdir: Path
    env: dict[str, str]
    server: Server
    root_key: str
    api_id: str

    @property
    def url(self) -> str:
        return self.server.url

    def key(self, owner: str, *permissions: str) -> tuple[str, str]:
        """A new key of the API: ``(key, key id)``."""
        spec = {"owner_id": owner, "permissions": list(permissions)}
        answer = httpx.post(f"{self.url}/v1/apis/{self.api_id}/keys", json=spec, headers=self.auth)
        assert answer.status_code == 201, answer.text
        created = answer.json()
        return created["key"], created["id"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.root_key}"}

    def token(self, key: str, **body: Any) -> str:
        answer = httpx.post(f"{self.url}/v1/tokens", json=body, headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    def revoke(self, key_id: str) -> None:
        assert httpx.post(f"{self.url}/v1/keys/{key_id}/revoke", headers=self.auth).status_code == 200


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("tokens")
    data = workdir / "data"
    env = {
        "KEYSTILE_DATA_DIR": str(data),
        "KEYSTILE_DATABASE_URL": f"sqlite:///{data / 'keystile.db'}",
        "KEYSTILE_CACHE_TTL_MS": "200",
        "KEYSTILE_AUTH_FAILURES_PER_MINUTE": "5",
    }
    server = serve(workdir, env)
    try:
        root_key = server.root_key()
        answer = httpx.post(
            f"{server.url}/v1/apis", json={"name": "notes"}, headers={"Authorization": f"Bearer {root_key}"}
        )
        yield Deployment(workdir, env, server, root_key, answer.json()["id"])
    finally:
        server.stop()


def fastapi_example(deployment: Deployment, name: str, **env: str) -> Server:
    """``examples/fastapi_app.py`` (``require_key``) served by granian, verifying as ``env`` says."""
    port = free_port()
    command = [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--working-dir",
        str(REPO),
        "examples.fastapi_app:create_app",
    ]
    workdir = deployment.workdir / name
    workdir.mkdir()
    return Server(command, workdir, env, port, name=name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_authlib_tokens_call_a_fastapi_app_offline_online_and_local(deployment: Deployment) -> None:
    url = deployment.url
    key, key_id = deployment.key("alice", "notes.read", "notes.write")
    endpoint = httpx.get(f"{url}/.well-known/oauth-authorization-server").json()["token_endpoint"]
    tokens = {}
    for method, scope in (("client_secret_basic", None), ("client_secret_post", "notes.read")):
        with OAuth2Client(key_id, key, token_endpoint_auth_method=method) as oauth:
            tokens[method] = oauth.fetch_token(endpoint, grant_type="client_credentials", scope=scope)["access_token"]
    remote = {"KEYSTILE_URL": url, "KEYSTILE_ROOT_KEY": deployment.root_key, "KEYSTILE_REMOTE_CACHE_MS": "0"}
    apps = {
        "offline": fastapi_example(deployment, "offline", **remote),
        "online": fastapi_example(deployment, "online", **remote, KEYSTILE_TOKENS_ONLINE="true"),
        "local": fastapi_example(
            deployment,
            "local",
            KEYSTILE_DATABASE_URL=deployment.env["KEYSTILE_DATABASE_URL"],
            KEYSTILE_CACHE_TTL_MS="200",
        ),
    }
    try:
        for mode, app in apps.items():
            for method, token in tokens.items():
                listed = httpx.get(f"{app.url}/notes", headers=bearer(token))
                assert listed.status_code == 200, (mode, method, listed.text)
                assert (listed.json()["owner_id"], listed.json()["key_id"]) == ("alice", key_id)
            # The token's scope is what the permission check sees: notes.read alone may not write.
            narrow = httpx.post(f"{app.url}/notes", json={"text": "hi"}, headers=bearer(tokens["client_secret_post"]))
            assert (narrow.status_code, narrow.json()["code"]) == (403, "insufficient_permissions"), (mode, narrow.text)
            wide = httpx.post(f"{app.url}/notes", json={"text": "hi"}, headers=bearer(tokens["client_secret_basic"]))
            assert wide.status_code == 201, (mode, wide.text)
            # The key itself still works, and garbage shaped like a token is refused like an unknown key.
            assert httpx.get(f"{app.url}/notes", headers=bearer(key)).status_code == 200
            bogus = httpx.get(f"{app.url}/notes", headers=bearer("eyJhbGciOiJFZERTQSJ9.e30.c2ln"))
            assert (bogus.status_code, bogus.json()["code"]) == (401, "invalid_key"), mode

        # Revoked: refused by the app that checks online and by the one on the database, accepted offline until
        # the token expires (as documented).
        deployment.revoke(key_id)
        deadline = time.monotonic() + 5
        while httpx.get(f"{apps['local'].url}/notes", headers=bearer(tokens["client_secret_basic"])).status_code == 200:
            assert time.monotonic() < deadline, "the local verifier kept a revoked key's token"
            time.sleep(0.1)
        for mode in ("online", "local"):
            refused = httpx.get(f"{apps[mode].url}/notes", headers=bearer(tokens["client_secret_basic"]))
            assert (refused.status_code, refused.json()["code"]) == (401, "invalid_key"), mode
            assert httpx.get(f"{apps[mode].url}/notes", headers=bearer(key)).status_code == 401
        offline = httpx.get(f"{apps['offline'].url}/notes", headers=bearer(tokens["client_secret_basic"]))
        assert offline.status_code == 200
    finally:
        for app in apps.values():
            app.stop()
        for app in apps.values():
            for token in tokens.values():
                assert token not in app.output()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forged_hs256(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _unsigned(claims: dict[str, Any], kid: str) -> str:
    head = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{head}.{_b64(json.dumps(claims).encode())}."


def test_the_token_verifier_against_a_real_server(deployment: Deployment) -> None:
    url = deployment.url
    key, key_id = deployment.key("bob", "notes.read")
    before = deployment.token(key, ttl_s=600)
    old_kid = jwt.get_unverified_header(before)["kid"]
    claims = jwt.decode(before, options={"verify_signature": False})
    jwk = next(k for k in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"] if k["kid"] == old_kid)
    oauth = httpx.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(key_id, key))
    access = oauth.json()["access_token"]

    async def check(verifier: TokenVerifier, token: str, permissions: str | None = None) -> Any:
        return await verifier.check_token(token, permissions=permissions, api_id=None)

    async def scenario() -> None:
        verifier = TokenVerifier(url)
        try:
            grant = await check(verifier, before, "notes.read")
            assert (grant.key_id, grant.owner_id, grant.scope, grant.kid) == (key_id, "bob", ("notes.read",), old_kid)
            assert verifier.jwks.fetches == 1
            for _ in range(3):  # seen before: from the cache, no fetch
                await check(verifier, before)
            assert verifier.jwks.fetches == 1
            with pytest.raises(Forbidden):
                await check(verifier, before, "notes.write")

            # Forged: another key under the same kid, alg none, HS256 keyed with the public key.
            other = Ed25519PrivateKey.generate()
            forged = [
                jwt.encode(claims, other, algorithm="EdDSA", headers={"kid": old_kid}),
                _unsigned(claims, old_kid),
                _forged_hs256(claims, old_kid, jwk["x"].encode()),
                _forged_hs256(claims, old_kid, base64.urlsafe_b64decode(jwk["x"] + "==")),
                jwt.encode({**claims, "iss": "https://elsewhere.example"}, other, algorithm="EdDSA"),
            ]
            for token in forged:
                with pytest.raises(Unauthenticated):
                    await check(verifier, token)

            # A flood of made-up kids fetches the key set at most once per second.
            fetches = verifier.jwks.fetches
            for n in range(50):
                with pytest.raises(Unauthenticated):
                    await check(verifier, jwt.encode(claims, other, algorithm="EdDSA", headers={"kid": f"sk_{n}"}))
            assert verifier.jwks.fetches - fetches <= 2

            # Rotation: new tokens carry the new kid and are accepted (the set is fetched again for it); a token of
            # the old key, never seen before, still is.
            cli("tokens", "rotate", workdir=deployment.workdir, env=deployment.env)
            deadline = time.monotonic() + 5
            while jwt.get_unverified_header(after := deployment.token(key))["kid"] == old_kid:
                assert time.monotonic() < deadline, "the server kept signing with the old key"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.1)  # past the refetch interval of the flood above
            fetches = verifier.jwks.fetches
            assert (await check(verifier, after)).kid != old_kid
            assert verifier.jwks.fetches == fetches + 1
            fresh = TokenVerifier(url)
            try:
                assert (await check(fresh, before)).kid == old_kid
                assert (await check(fresh, after)).key_id == key_id
            finally:
                await fresh.aclose()

            # Expired: refused when first seen, and once a token seen before passes its exp.
            # (Warmed first: the key set and the issuer fetched, so the first check of the short token is quick; a
            # 3 s ttl still leaves it at least 2 s, since exp counts from iat in whole seconds.)
            strict = TokenVerifier(url, leeway_s=0)
            try:
                await check(strict, after)
                short = deployment.token(key, ttl_s=3)
                await check(strict, short)
                await asyncio.sleep(4.1)
                with pytest.raises(Unauthenticated):
                    await check(strict, short)
                await strict.aclose()
                strict = TokenVerifier(url, leeway_s=0)
                with pytest.raises(Unauthenticated):
                    await check(strict, short)
            finally:
                await strict.aclose()

            # An audience: OAuth access tokens carry their API's id, POST /v1/tokens tokens carry none.
            scoped = TokenVerifier(url, audience=deployment.api_id)
            try:
                assert (await check(scoped, access)).key_id == key_id
                with pytest.raises(Unauthenticated):
                    await check(scoped, before)
            finally:
                await scoped.aclose()
            elsewhere = TokenVerifier(url, audience="api_elsewhere")
            try:
                with pytest.raises(Unauthenticated):
                    await check(elsewhere, access)
            finally:
                await elsewhere.aclose()

            # A token verifier alone (no root key) takes tokens and refuses keys.
            alone = await authenticate(verifier, [(b"authorization", f"Bearer {after}".encode())], b"", None)
            assert (alone.token, alone.key_id) == (True, key_id)
            with pytest.raises(Unauthenticated):
                await authenticate(verifier, [(b"x-api-key", key.encode())], b"", None)

            # Through the integrations' one decision, with a remote verifier: the handler sees a token.
            remote = RemoteVerifier(url, deployment.root_key, cache_ttl=0)
            try:
                seen = await authenticate(remote, [(b"authorization", f"Bearer {after}".encode())], b"", None)
                assert (seen.token, seen.key_id, seen.owner_id, seen.subject, seen.permissions) == (
                    True,
                    key_id,
                    "bob",
                    "bob",
                    ("notes.read",),
                )
                by_key = await authenticate(remote, [(b"x-api-key", key.encode())], b"", None)
                assert (by_key.token, by_key.key_id) == (False, key_id)
                with pytest.raises(Unauthenticated):
                    await authenticate(
                        remote, [(b"authorization", f"Bearer {after}".encode())], b"", None, api_id="api_other"
                    )
            finally:
                await remote.aclose()
        finally:
            await verifier.aclose()

    asyncio.run(scenario())


def test_tokens_through_forward_auth_and_the_failure_limit(deployment: Deployment) -> None:
    url = deployment.url
    key, key_id = deployment.key("carol", "notes.read")
    token = deployment.token(key)
    auth = f"{url}/v1/auth?api_id={deployment.api_id}"
    passed = httpx.get(auth, headers=bearer(token))
    assert passed.status_code == 200
    assert (passed.headers["x-keystile-key-id"], passed.headers["x-keystile-owner-id"]) == (key_id, "carol")
    assert (passed.headers["x-keystile-api-id"], passed.headers["x-keystile-token"]) == (deployment.api_id, "true")
    assert passed.content == b""
    denied = httpx.get(auth + "&permissions=notes.write", headers=bearer(token))
    assert (denied.status_code, denied.headers["x-keystile-code"]) == (403, "INSUFFICIENT_PERMISSIONS")
    other = httpx.get(f"{url}/v1/auth?api_id=api_elsewhere", headers=bearer(token))
    assert (other.status_code, other.headers["x-keystile-code"]) == (401, "NOT_FOUND")

    deployment.revoke(key_id)
    revoked = httpx.get(auth, headers=bearer(token))
    assert (revoked.status_code, revoked.headers["x-keystile-code"]) == (401, "REVOKED")

    # Failed token checks count toward the per-address limit (five a minute here), and so do failed keys at the
    # token endpoint: two failures above, two bad tokens, one bad key, then 429 for everything.
    for _ in range(2):
        bad = httpx.get(auth, headers=bearer(token[:-2] + "xx"))
        assert (bad.status_code, bad.headers["x-keystile-code"]) == (401, "NOT_FOUND")
    bad_key = {"X-API-Key": "ks_" + "A" * 38}
    assert httpx.post(f"{url}/v1/tokens", headers=bad_key).status_code == 401
    limited = httpx.post(f"{url}/v1/tokens", headers=bad_key)
    assert (limited.status_code, limited.json()["code"]) == (429, "too_many_failures")
    assert int(limited.headers["retry-after"]) >= 1
    live, _ = deployment.key("dave", "notes.read")
    blocked = httpx.get(auth, headers=bearer(live))
    assert (blocked.status_code, blocked.headers["x-keystile-code"]) == (429, "too_many_failures")
    issued = httpx.post(f"{url}/v1/tokens", headers={"X-API-Key": live})
    assert (issued.status_code, issued.json()["code"]) == (429, "too_many_failures")
