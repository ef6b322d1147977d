"""``POST /v1/leaks`` (SPEC S3): GitHub's secret scanning partner program, signed with a real ECDSA P-256 key."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keystile.config import Settings
from keystile.core import keys as keyformat
from keystile.leaks.partner import key_identifier
from keystile.server import create_app
from keystile.service import Keystile

from .helpers import Headers, problem

KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
URL = "https://github.com/octo/app/blob/0123456789abcdef0123456789abcdef01234567/config.py"


def pem(private: ec.EllipticCurvePrivateKey) -> str:
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode()


def sign(private: ec.EllipticCurvePrivateKey, body: bytes, key_id: str = KEY_ID) -> dict[str, str]:
    signature = private.sign(body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "Github-Public-Key-Identifier": key_id,
        "Github-Public-Key-Signature": base64.b64encode(signature).decode(),
    }


def payload(*tokens: str, source: str = "content") -> bytes:
    return json.dumps([{"token": t, "type": "keystile_api_key", "url": URL, "source": source} for t in tokens]).encode()


@pytest.fixture
def github() -> ec.EllipticCurvePrivateKey:
    """GitHub's signing key (its private half never leaves GitHub; here the test plays GitHub)."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def key_file(tmp_path: Path, github: ec.EllipticCurvePrivateKey) -> Path:
    """The public keys as GitHub's meta endpoint publishes them, with an older key beside the current one."""
    older = ec.generate_private_key(ec.SECP256R1())
    document = {
        "public_keys": [
            {"key_identifier": "0" * 64, "key": pem(older), "is_current": False},
            {"key_identifier": KEY_ID, "key": pem(github), "is_current": True},
        ]
    }
    path = tmp_path / "github-keys.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def settings(database_url: str, key_file: Path) -> Settings:
    return Settings(database_url=database_url, leaks_public_keys=key_file)


async def status_of(client: httpx.AsyncClient, auth: Headers, plain: str) -> str:
    response = await client.post("/v1/keys/verify", json={"key": plain}, headers=auth)
    code: str = response.json()["code"]
    return code


async def audit(client: httpx.AsyncClient, auth: Headers) -> list[dict[str, Any]]:
    response = await client.get("/v1/audit", params={"action": "key.leak_reported"}, headers=auth)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_signed_report_revokes_the_keys_it_names_and_audits_them(
    client: httpx.AsyncClient,
    auth: Headers,
    api: dict[str, Any],
    key: dict[str, Any],
    github: ec.EllipticCurvePrivateKey,
) -> None:
    second = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()
    spared = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()
    stranger = keyformat.generate("ks")
    body = payload(key["key"], second["key"], stranger)

    response = await client.post("/v1/leaks", content=body, headers=sign(github, body))

    assert response.status_code == 200, response.text
    assert response.json() == [
        {"token_hash": hashlib.sha256(token.encode()).hexdigest(), "token_type": "keystile_api_key", "label": label}
        for token, label in (
            (key["key"], "true_positive"),
            (second["key"], "true_positive"),
            (stranger, "false_positive"),
        )
    ]
    assert await status_of(client, auth, key["key"]) == "REVOKED"
    assert await status_of(client, auth, second["key"]) == "REVOKED"
    assert await status_of(client, auth, spared["key"]) == "VALID"
    entries = await audit(client, auth)
    assert {(e["actor"], e["target"]) for e in entries} == {("github", key["id"]), ("github", second["id"])}
    for entry in entries:
        assert entry["changes"]["reported_by"] == "github"
        assert entry["changes"]["url"] == URL
        assert entry["changes"]["source"] == "content"
        assert entry["changes"]["type"] == "keystile_api_key"
        assert entry["changes"]["revoked_at"][0] is None
    everything = (await client.get("/v1/audit", params={"limit": 1000}, headers=auth)).text
    for token in (key["key"], second["key"], stranger):
        assert token not in everything
        assert token not in response.text


async def test_a_leaked_root_key_is_revoked_too(
    client: httpx.AsyncClient, auth: Headers, grant: Any, github: ec.EllipticCurvePrivateKey
) -> None:
    leaked: Headers = await grant("keys.read")
    plain = leaked["Authorization"].removeprefix("Bearer ")
    body = payload(plain)
    response = await client.post("/v1/leaks", content=body, headers=sign(github, body))
    assert response.json()[0]["label"] == "true_positive"
    problem(await client.get("/v1/apis", headers=leaked), 401, "invalid_root_key")


async def test_a_report_of_a_revoked_key_is_audited_and_changes_nothing(
    client: httpx.AsyncClient, auth: Headers, key: dict[str, Any], github: ec.EllipticCurvePrivateKey
) -> None:
    revoked = (await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)).json()
    body = payload(key["key"], source="commit")
    response = await client.post("/v1/leaks", content=body, headers=sign(github, body))
    assert response.json()[0]["label"] == "true_positive"
    [entry] = await audit(client, auth)
    assert "revoked_at" not in entry["changes"]
    assert entry["changes"]["source"] == "commit"
    again = (await client.get(f"/v1/keys/{key['id']}", headers=auth)).json()
    assert again["revoked_at"] == revoked["revoked_at"]


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("other_signer", "invalid_signature"),
        ("other_body", "invalid_signature"),
        ("garbled_signature", "invalid_signature"),
        ("unknown_key_id", "unknown_signing_key"),
        ("no_signature", "missing_signature"),
        ("no_key_id", "missing_signature"),
        ("no_headers", "missing_signature"),
    ],
)
async def test_a_report_without_a_good_signature_is_refused_and_revokes_nothing(
    client: httpx.AsyncClient,
    auth: Headers,
    key: dict[str, Any],
    github: ec.EllipticCurvePrivateKey,
    tamper: str,
    code: str,
) -> None:
    body = payload(key["key"])
    headers = sign(github, body)
    if tamper == "other_signer":
        headers = sign(ec.generate_private_key(ec.SECP256R1()), body)
    elif tamper == "other_body":
        headers = sign(github, payload(keyformat.generate("ks")))
    elif tamper == "garbled_signature":
        headers["Github-Public-Key-Signature"] = "not base64!"
    elif tamper == "unknown_key_id":
        headers = sign(github, body, key_id="f" * 64)
    elif tamper == "no_signature":
        del headers["Github-Public-Key-Signature"]
    elif tamper == "no_key_id":
        del headers["Github-Public-Key-Identifier"]
    else:
        headers = {"Content-Type": "application/json"}

    response = await client.post("/v1/leaks", content=body, headers=headers)

    problem(response, 403, code)
    assert key["key"] not in response.text
    assert await status_of(client, auth, key["key"]) == "VALID"
    assert await audit(client, auth) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"token": "x"}',
        b'[{"type": "keystile_api_key"}]',
        b'[{"token": 42}]',
        b"",
    ],
)
async def test_a_signed_but_malformed_body_is_a_400_and_revokes_nothing(
    client: httpx.AsyncClient, auth: Headers, key: dict[str, Any], github: ec.EllipticCurvePrivateKey, body: bytes
) -> None:
    response = await client.post("/v1/leaks", content=body, headers=sign(github, body))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await status_of(client, auth, key["key"]) == "VALID"
    assert await audit(client, auth) == []


async def test_an_empty_report_and_an_over_long_token_are_answered(
    client: httpx.AsyncClient, github: ec.EllipticCurvePrivateKey
) -> None:
    body = b"[]"
    response = await client.post("/v1/leaks", content=body, headers=sign(github, body))
    assert (response.status_code, response.json()) == (200, [])
    body = payload("x" * 10_000)
    response = await client.post("/v1/leaks", content=body, headers=sign(github, body))
    assert response.json()[0]["label"] == "false_positive"


async def test_pem_public_keys_are_named_by_the_sha256_of_their_der(
    ks: Keystile, tmp_path: Path, github: ec.EllipticCurvePrivateKey, key: dict[str, Any], auth: Headers
) -> None:
    path = tmp_path / "github.pem"
    path.write_text(pem(ec.generate_private_key(ec.SECP256R1())) + pem(github))
    app = create_app(Settings(database_url="memory://", leaks_public_keys=path), keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        body = payload(key["key"])
        response = await client.post(
            "/v1/leaks", content=body, headers=sign(github, body, key_identifier(github.public_key()))
        )
        assert response.json()[0]["label"] == "true_positive"
        problem(await client.post("/v1/leaks", content=body, headers=sign(github, body)), 403, "unknown_signing_key")


async def test_without_public_keys_the_route_is_off_and_oversized_bodies_are_refused(
    ks: Keystile, tmp_path: Path, github: ec.EllipticCurvePrivateKey, key_file: Path
) -> None:
    body = payload(keyformat.generate("ks"))
    off = create_app(Settings(database_url="memory://"), keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=off), base_url="http://test") as client:
        problem(await client.post("/v1/leaks", content=body, headers=sign(github, body)), 404, "leaks_not_configured")
    small = create_app(Settings(database_url="memory://", leaks_public_keys=key_file, max_body_bytes=1024), keystile=ks)
    big = payload(*(keyformat.generate("ks") for _ in range(40)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small), base_url="http://test") as client:
        problem(await client.post("/v1/leaks", content=big, headers=sign(github, big)), 413, "payload_too_large")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    unreadable = create_app(Settings(database_url="memory://", leaks_public_keys=broken), keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=unreadable), base_url="http://test") as client:
        problem(await client.post("/v1/leaks", content=body, headers=sign(github, body)), 503, "leaks_keys_unreadable")


async def test_the_route_is_documented_as_signed_not_root_key_authenticated(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/leaks"]["post"]
    assert operation["security"] == []
    assert "Github-Public-Key-Signature" in operation["description"]
    assert set(operation["responses"]) >= {"200", "400", "403", "404"}
