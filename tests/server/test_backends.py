"""The README walkthrough over HTTP on every storage backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import httpx
import pytest

from .helpers import Headers, problem

pytestmark = pytest.mark.parametrize(
    "database_url", ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


async def test_create_verify_revoke_and_a_typo(client: httpx.AsyncClient, auth: Headers) -> None:
    api = (await client.post("/v1/apis", json={"name": "demo"}, headers=auth)).json()
    created = await client.post(
        f"/v1/apis/{api['id']}/keys", json={"name": "first", "permissions": ["docs.read"]}, headers=auth
    )
    assert created.status_code == 201
    key = created.json()

    async def verify(plain: str, **extra: str) -> str:
        response = await client.post("/v1/keys/verify", json={"key": plain, **extra}, headers=auth)
        assert response.status_code == 200, response.text
        code: str = response.json()["code"]
        return code

    assert await verify(key["key"], permissions="docs.read") == "VALID"
    assert await verify(key["key"], permissions="docs.write") == "INSUFFICIENT_PERMISSIONS"
    assert (await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)).status_code == 200
    assert await verify(key["key"]) == "REVOKED"
    assert await verify(key["key"][:-1] + ("x" if key["key"][-1] != "x" else "y")) == "NOT_FOUND"

    listed = (await client.get(f"/v1/apis/{api['id']}/keys", params={"revoked": "true"}, headers=auth)).json()
    assert [item["id"] for item in listed["items"]] == [key["id"]]
    audit = (await client.get("/v1/audit", params={"target": key["id"]}, headers=auth)).json()
    assert [entry["action"] for entry in audit["items"]] == ["key.revoke", "key.create"]
    assert (await client.delete(f"/v1/apis/{api['id']}", headers=auth)).status_code == 204
    problem(await client.get(f"/v1/keys/{key['id']}", headers=auth), 404, "key_not_found")
    assert (await client.get("/readyz")).status_code == 200
