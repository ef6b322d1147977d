"""Webhook endpoints over HTTP: ``/v1/webhooks`` and its sub-routes, by answer status."""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]
PUBLIC = "https://93.184.215.14/hook"


async def _create(client: httpx.AsyncClient, auth: Headers, **fields: Any) -> Json:
    body = {"url": PUBLIC, "events": ["key.created"], **fields}
    response = await client.post("/v1/webhooks", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def test_create_answers_201_with_the_secret_once(client: httpx.AsyncClient, auth: Headers) -> None:
    created = await _create(client, auth, description="billing")
    assert created["secret"].startswith("whsec_")
    shown = await client.get(f"/v1/webhooks/{created['id']}", headers=auth)
    listed = await client.get("/v1/webhooks", headers=auth)
    assert shown.status_code == listed.status_code == 200
    assert created["secret"] not in shown.text + listed.text
    assert "secret" not in shown.json()
    audit = await client.get("/v1/audit", params={"action": "webhook.create"}, headers=auth)
    assert created["secret"] not in audit.text


async def test_400_for_a_private_address_or_an_unknown_event(client: httpx.AsyncClient, auth: Headers) -> None:
    for url in ("http://127.0.0.1:8080/x", "http://10.0.0.7/x", "http://169.254.169.254/latest", "http://[::1]/x"):
        response = await client.post("/v1/webhooks", json={"url": url, "events": ["key.created"]}, headers=auth)
        assert problem(response, 400, "webhook_url_forbidden")["field"] == "/url"
    response = await client.post("/v1/webhooks", json={"url": PUBLIC, "events": ["key.nope"]}, headers=auth)
    assert response.status_code == 400
    created = await _create(client, auth)
    patched = await client.patch(f"/v1/webhooks/{created['id']}", json={"url": "http://192.168.1.1/x"}, headers=auth)
    problem(patched, 400, "webhook_url_forbidden")


async def test_403_without_the_permission_and_read_only_with_webhooks_read(
    client: httpx.AsyncClient, auth: Headers, grant: Grant
) -> None:
    created = await _create(client, auth)
    keys_only = await grant("keys.read")
    problem(await client.get("/v1/webhooks", headers=keys_only), 403, "insufficient_permissions")
    reader = await grant("webhooks.read")
    assert (await client.get(f"/v1/webhooks/{created['id']}", headers=reader)).status_code == 200
    assert (await client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=reader)).status_code == 200
    problem(await client.delete(f"/v1/webhooks/{created['id']}", headers=reader), 403, "insufficient_permissions")
    rotate = await client.post(f"/v1/webhooks/{created['id']}/rotate-secret", json={}, headers=reader)
    problem(rotate, 403, "insufficient_permissions")


async def test_404_for_an_unknown_endpoint_or_delivery(client: httpx.AsyncClient, auth: Headers) -> None:
    problem(await client.get("/v1/webhooks/whk_0000000000000000000000", headers=auth), 404, "webhook_not_found")
    created = await _create(client, auth)
    retry = await client.post(f"/v1/webhooks/{created['id']}/deliveries/dlv_0000000000000000000000/retry", headers=auth)
    problem(retry, 404, "delivery_not_found")
    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=auth)).status_code == 204
    problem(await client.delete(f"/v1/webhooks/{created['id']}", headers=auth), 404, "webhook_not_found")


async def test_a_key_change_is_queued_for_the_endpoints_that_want_it(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json
) -> None:
    mine = await _create(client, auth, api_ids=[api["id"]], events=["key.created", "key.revoked"])
    everything = await _create(client, auth, events=["key.revoked"])
    key = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()
    await client.post(f"/v1/apis/{other_api['id']}/keys", json={}, headers=auth)
    await client.post(f"/v1/keys/{key['id']}/revoke", headers=auth)

    def types(answer: httpx.Response) -> list[str]:
        return sorted(d["type"] for d in answer.json()["items"])

    assert types(await client.get(f"/v1/webhooks/{mine['id']}/deliveries", headers=auth)) == [
        "key.created",
        "key.revoked",
    ]
    assert types(await client.get(f"/v1/webhooks/{everything['id']}/deliveries", headers=auth)) == ["key.revoked"]
    pending = await client.get(f"/v1/webhooks/{mine['id']}/deliveries", params={"state": "pending"}, headers=auth)
    assert len(pending.json()["items"]) == 2
