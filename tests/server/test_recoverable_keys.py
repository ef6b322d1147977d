"""``GET /v1/keys/{key_id}/plaintext`` (SPEC K3, K6) over HTTP on SQLite and PostgreSQL: a recoverable key read
back, and each refusal as the problem a client sees."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from keystile.config import Settings
from keystile.server import create_app
from keystile.service import Keystile
from keystile.service.vault import MasterKeys
from keystile.storage import SqlStorage

from .conftest import Grant
from .helpers import Headers, problem

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
Json = dict[str, Any]


async def _vault(client: httpx.AsyncClient, auth: Headers, name: str = "vault") -> Json:
    response = await client.post("/v1/apis", json={"name": name, "recoverable": True}, headers=auth)
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


async def test_keys_created_single_bulk_and_rerolled_read_back_as_created(
    client: httpx.AsyncClient, auth: Headers
) -> None:
    api = await _vault(client, auth)
    one = (await client.post(f"/v1/apis/{api['id']}/keys", json={"name": "one"}, headers=auth)).json()
    bulk = (await client.post(f"/v1/apis/{api['id']}/keys/bulk", json={"keys": [{}, {}]}, headers=auth)).json()
    rerolled = (await client.post(f"/v1/keys/{one['id']}/reroll", json={}, headers=auth)).json()

    for created in [one, *bulk["items"], rerolled]:
        response = await client.get(f"/v1/keys/{created['id']}/plaintext", headers=auth)
        assert response.status_code == 200, response.text
        assert response.json() == {"key_id": created["id"], "key": created["key"]}
    audit = (await client.get("/v1/audit", params={"action": "key.decrypt"}, headers=auth)).json()
    assert len(audit["items"]) == 4
    assert all(
        entry["changes"] == {"start": entry_key["start"]}
        for entry, entry_key in zip(audit["items"], reversed([one, *bulk["items"], rerolled]), strict=True)
    )


async def test_without_keys_decrypt_403_and_scoped_to_another_api_404(
    client: httpx.AsyncClient, auth: Headers, grant: Grant
) -> None:
    api = await _vault(client, auth)
    other = await _vault(client, auth, "other")
    key = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()
    url = f"/v1/keys/{key['id']}/plaintext"

    problem(await client.get(url, headers=await grant("keys.read", "keys.write")), 403, "insufficient_permissions")
    problem(await client.get(url, headers=await grant(f"api.{other['id']}.keys.decrypt")), 404, "key_not_found")
    scoped = await client.get(url, headers=await grant(f"api.{api['id']}.keys.decrypt"))
    assert scoped.json()["key"] == key["key"]


async def test_a_key_not_stored_recoverable_is_409_not_recoverable(
    client: httpx.AsyncClient, auth: Headers, key: Json
) -> None:
    api = await _vault(client, auth)
    opted_out = (await client.post(f"/v1/apis/{api['id']}/keys", json={"recoverable": False}, headers=auth)).json()

    for created in (key, opted_out):
        body = problem(await client.get(f"/v1/keys/{created['id']}/plaintext", headers=auth), 409, "not_recoverable")
        assert created["key"] not in body["detail"]


async def test_a_key_cannot_opt_in_where_its_api_is_not_recoverable(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json={"recoverable": True}, headers=auth)
    assert problem(response, 400, "api_not_recoverable")["field"] == "/recoverable"
    bulk = await client.post(
        f"/v1/apis/{api['id']}/keys/bulk", json={"keys": [{}, {"recoverable": True}]}, headers=auth
    )
    assert problem(bulk, 400, "api_not_recoverable")["index"] == 1


async def test_a_ciphertext_copied_from_another_key_is_409_not_a_500(
    client: httpx.AsyncClient, auth: Headers, storage: SqlStorage
) -> None:
    api = await _vault(client, auth)
    bulk = await client.post(f"/v1/apis/{api['id']}/keys/bulk", json={"keys": [{}, {}]}, headers=auth)
    first, second = bulk.json()["items"]
    secret = await storage.get_key_secret(first["id"])
    assert secret is not None
    await storage.driver.execute(
        "UPDATE key_secrets SET nonce = $2, ciphertext = $3 WHERE key_id = $1",
        second["id"],
        secret.nonce,
        secret.ciphertext,
    )

    response = await client.get(f"/v1/keys/{second['id']}/plaintext", headers=auth)
    body = problem(response, 409, "key_secret_unreadable")
    assert first["key"] not in response.text
    assert second["key"] not in response.text
    assert "another key" in body["detail"]


async def test_a_server_with_a_wrong_master_key_verifies_and_answers_503_to_reading_back(
    client: httpx.AsyncClient, auth: Headers, ks: Keystile, settings: Settings
) -> None:
    api = await _vault(client, auth)
    key = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()
    wrong = Keystile.create(ks.storage, settings, ks.ctx.clock)
    wrong.vault.masters = MasterKeys.of(secrets.token_bytes(32))
    transport = httpx.ASGITransport(app=create_app(settings, keystile=wrong))

    async with httpx.AsyncClient(transport=transport, base_url="http://test") as other:
        verified = await other.post("/v1/keys/verify", json={"key": key["key"]}, headers=auth)
        assert verified.json()["code"] == "VALID"
        read = await other.get(f"/v1/keys/{key['id']}/plaintext", headers=auth)
        problem(read, 503, "master_key_unavailable")
        created = await other.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)
        problem(created, 503, "master_key_unavailable")
        opted_out = await other.post(f"/v1/apis/{api['id']}/keys", json={"recoverable": False}, headers=auth)
        assert opted_out.status_code == 201
