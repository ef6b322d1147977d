"""OAuth 2.0 client credentials with a real server (SPEC T3): Authlib's OAuth 2.0 client fetches access tokens by
``client_secret_basic`` and ``client_secret_post``; they check offline with PyJWT against the JWKS in the RFC 9068
profile; RFC 6749 errors; the RFC 8414 metadata document; RFC 7662 introspection (a revoked key: inactive)."""

from __future__ import annotations

import base64
import warnings
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from .server import ROOT_KEY_RE, cli, serve

with warnings.catch_warnings():
    # Authlib warns on import that it would rather use httpx2 (not released here); its httpx client works.
    import authlib.deprecate  # noqa: F401 (its filter first, so that the one below wins)

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.e2e


def offline(url: str, token: str, audience: str) -> dict[str, Any]:
    signing_key = jwt.PyJWKClient(f"{url}/.well-known/jwks.json", cache_keys=False).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, signing_key, algorithms=["EdDSA"], issuer=url, audience=audience, options={"require": ["exp", "jti"]}
    )
    return claims


def test_authlib_fetches_tokens_that_verify_offline_and_introspect(tmp_path: Path) -> None:
    env = {
        "KEYSTILE_DATA_DIR": str(tmp_path / "data"),
        "KEYSTILE_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'keystile.db'}",
    }
    [root_key] = ROOT_KEY_RE.findall(cli("init", workdir=tmp_path, env=env))
    server = serve(tmp_path, env)
    url = server.url
    auth = {"Authorization": f"Bearer {root_key}"}
    try:
        api_id = httpx.post(f"{url}/v1/apis", json={"name": "weather"}, headers=auth).json()["id"]
        spec = {"owner_id": "alice", "permissions": ["forecast.read", "forecast.write"]}
        created = httpx.post(f"{url}/v1/apis/{api_id}/keys", json=spec, headers=auth).json()
        key, key_id = created["key"], created["id"]
        other = httpx.post(f"{url}/v1/apis/{api_id}/keys", json={}, headers=auth).json()

        metadata = httpx.get(f"{url}/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == url
        assert metadata["token_endpoint"] == f"{url}/oauth/token"
        assert metadata["jwks_uri"] == f"{url}/.well-known/jwks.json"
        assert metadata["introspection_endpoint"] == f"{url}/oauth/introspect"
        assert metadata["grant_types_supported"] == ["client_credentials"]
        assert metadata["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
        assert metadata["response_types_supported"] == []
        endpoint = metadata["token_endpoint"]

        tokens = {}
        for method in ("client_secret_basic", "client_secret_post"):
            with OAuth2Client(key_id, key, token_endpoint_auth_method=method) as oauth:
                scope = "forecast.read" if method == "client_secret_post" else None
                token = oauth.fetch_token(endpoint, grant_type="client_credentials", scope=scope)
            assert token["token_type"] == "Bearer"
            assert 0 < token["expires_in"] <= 900
            claims = offline(url, token["access_token"], api_id)
            assert (claims["aud"], claims["client_id"], claims["key_id"], claims["sub"]) == (
                api_id,
                key_id,
                key_id,
                "alice",
            )
            assert claims["scope"] == token["scope"]
            assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"
            tokens[method] = token
        assert tokens["client_secret_post"]["scope"] == "forecast.read"
        assert tokens["client_secret_basic"]["scope"] == "forecast.read forecast.write"

        raw = httpx.post(endpoint, data={"grant_type": "client_credentials"}, auth=(key_id, key))
        assert raw.status_code == 200
        assert (raw.headers["cache-control"], raw.headers["pragma"]) == ("no-store", "no-cache")

        # RFC 6749 section 5.2 errors.
        wrong = httpx.post(endpoint, data={"grant_type": "client_credentials"}, auth=(key_id, key + "x"))
        assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
        assert wrong.headers["www-authenticate"] == 'Basic realm="keystile"'
        foreign = httpx.post(endpoint, data={"grant_type": "client_credentials"}, auth=(other["id"], key))
        assert (foreign.status_code, foreign.json()["error"]) == (401, "invalid_client")
        posted = {"grant_type": "client_credentials", "client_id": key_id, "client_secret": "nope"}
        wrong_post = httpx.post(endpoint, data=posted)
        assert (wrong_post.status_code, wrong_post.json()["error"]) == (401, "invalid_client")
        assert "www-authenticate" not in wrong_post.headers
        not_held = {"grant_type": "client_credentials", "scope": "admin"}
        refused = httpx.post(endpoint, data=not_held, auth=(key_id, key))
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")
        for scope in ("forecast.read AND", "or forecast.read", "a" * 129, "((", "é"):  # not permission names
            bad_scope = httpx.post(endpoint, data={**not_held, "scope": scope}, auth=(key_id, key))
            assert (bad_scope.status_code, bad_scope.json()["error"]) == (400, "invalid_scope"), scope
        password = httpx.post(endpoint, data={"grant_type": "password"}, auth=(key_id, key))
        assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")
        with OAuth2Client(key_id, key + "x") as oauth, pytest.raises(Exception, match="invalid_client"):
            oauth.fetch_token(endpoint, grant_type="client_credentials")

        # RFC 7662 introspection with a root key.
        introspect = metadata["introspection_endpoint"]
        access = tokens["client_secret_basic"]["access_token"]
        active = httpx.post(introspect, data={"token": access}, headers=auth).json()
        assert active["active"] is True
        assert (active["client_id"], active["aud"], active["sub"], active["iss"]) == (key_id, api_id, "alice", url)
        assert active["scope"] == "forecast.read forecast.write"
        assert isinstance(active["exp"], int)
        assert isinstance(active["iat"], int)
        assert active["jti"]
        forged = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
        assert httpx.post(introspect, data={"token": forged}, headers=auth).json() == {"active": False}
        assert httpx.post(introspect, data={"token": access}).status_code == 401
        httpx.post(f"{url}/v1/keys/{key_id}/revoke", headers=auth).raise_for_status()
        assert httpx.post(introspect, data={"token": access}, headers=auth).json() == {"active": False}
        # A revoked key gets no token.
        revoked = httpx.post(endpoint, data={"grant_type": "client_credentials"}, auth=(key_id, key))
        assert (revoked.status_code, revoked.json()["error"]) == (401, "invalid_client")
        # Credentials form-url-encoded inside Basic (RFC 6749 section 2.3.1) decode too.
        encoded = base64.b64encode(f"{other['id']}:{other['key']}".encode()).decode()
        ok = httpx.post(
            endpoint, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {encoded}"}
        )
        assert ok.status_code == 200, ok.text
    finally:
        server.stop()
