"""SPEC R6, S4 on the Unkey-compatible routes, in process: bad input of every kind answers Unkey's error body with
Unkey's status (never a 500, never Keystile's problem+json), and no answer or audit entry holds a key it did not
create."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keystile.core.models import AuditFilter
from keystile.service import Actor, Keystile
from tests.server.helpers import Headers

DOCS = "https://unkey.com/docs/errors/"


def unkey_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """Assert that ``response`` is Unkey's error body with ``status`` and the type ending in ``kind``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"meta", "error"}
    assert body["meta"]["requestId"] == response.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    assert (error["status"], error["type"]) == (status, DOCS + kind)
    assert error["title"]
    assert error["detail"]
    if status == 400:
        assert isinstance(error["errors"], list)
    return error


async def test_without_a_root_key_the_answer_is_unkeys_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/apis.createApi", json={"name": "x"})
    unkey_error(response, 400, "unkey/authentication/missing")


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (b"{not json", None),
        (b'{"name": "x", "bogus": 1}', "body.bogus"),
        (b'{"name": 5}', "body.name"),
        (b"[]", None),
    ],
)
async def test_a_body_unkey_would_refuse_is_a_400_naming_the_field(
    client: httpx.AsyncClient, auth: Headers, body: bytes, location: str | None
) -> None:
    response = await client.post("/v2/apis.createApi", content=body, headers=auth)
    error = unkey_error(response, 400, "unkey/application/invalid_input")
    assert [e["location"] for e in error["errors"]] == ([location] if location else [])


async def test_a_body_over_the_limit_is_a_413_in_unkeys_shape(client: httpx.AsyncClient, auth: Headers) -> None:
    big = b'{"name": "' + b"x" * 2_000_000 + b'"}'
    response = await client.post("/v2/apis.createApi", content=big, headers=auth)
    unkey_error(response, 413, "user/bad_request/request_body_too_large")


async def test_other_methods_and_routes_answer_unkeys_body(client: httpx.AsyncClient, auth: Headers) -> None:
    wrong_method = await client.get("/v2/apis.getApi", headers=auth)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["status"] == 405
    created = await client.post("/v1/apis", json={"name": "x"}, headers=auth)
    made = await client.post(f"/v1/apis/{created.json()['id']}/keys", json={}, headers=auth)
    pasted = made.json()["key"]  # a key put in a path by mistake is not echoed
    for path in ("/v2/", "/v2/keys", "/v2/apis.listApis", "/v2/keys.createKey/extra", f"/v2/verify/{pasted}"):
        unknown = await client.post(path, json={}, headers=auth)
        assert unknown.status_code == 404, path
        assert unknown.json()["error"]["type"] == "https://keystile.dev/problems/route_not_found"
        assert pasted not in unknown.text


async def test_a_request_id_is_never_taken_from_a_request_that_carries_a_key_in_its_body(
    client: httpx.AsyncClient, auth: Headers
) -> None:
    api_id = (await client.post("/v2/apis.createApi", json={"name": "x"}, headers=auth)).json()["data"]["apiId"]
    created = await client.post("/v2/keys.createKey", json={"apiId": api_id}, headers=auth)
    plain = created.json()["data"]["key"]
    answer = await client.post(
        "/v2/keys.verifyKey", json={"key": plain}, headers={**auth, "x-request-id": f"trace-{plain}"}
    )
    assert answer.json()["data"]["valid"] is True
    assert plain not in answer.headers["x-request-id"]
    assert plain not in answer.json()["meta"]["requestId"]
    # Elsewhere the client's own id is kept, as on /v1.
    listed = await client.post("/v2/apis.getApi", json={"apiId": api_id}, headers={**auth, "x-request-id": "trace-1"})
    assert listed.json()["meta"]["requestId"] == "trace-1"


async def test_keys_made_through_unkeys_routes_appear_in_plain_text_only_in_their_answer(
    client: httpx.AsyncClient, auth: Headers, ks: Keystile, root: tuple[Actor, str]
) -> None:
    api_id = (await client.post("/v2/apis.createApi", json={"name": "x"}, headers=auth)).json()["data"]["apiId"]
    made = (await client.post("/v2/keys.createKey", json={"apiId": api_id}, headers=auth)).json()["data"]
    rerolled = (
        await client.post("/v2/keys.rerollKey", json={"keyId": made["keyId"], "expiration": 0}, headers=auth)
    ).json()["data"]
    for path, body in [
        ("/v2/keys.getKey", {"keyId": made["keyId"]}),
        ("/v2/keys.whoami", {"key": rerolled["key"]}),
        ("/v2/apis.listKeys", {"apiId": api_id}),
    ]:
        text = (await client.post(path, json=body, headers=auth)).text
        assert made["key"] not in text
        assert rerolled["key"] not in text
    entries = await ks.storage.list_audit(AuditFilter(), before=None, limit=100)
    assert {"api.create", "key.create", "key.reroll"} <= {entry.action for entry in entries}
    assert all(entry.actor == root[0].id for entry in entries if entry.action != "root_key.create")
    for entry in entries:
        assert made["key"] not in str(entry.changes)
        assert rerolled["key"] not in str(entry.changes)
