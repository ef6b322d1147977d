"""``POST /v1/apis/{api_id}/keys/import`` (SPEC R4, H): the answer, problems that name the failing entry, the
root key's permission per API, and a key of another API (409)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]
KEY = "sk_live_0123456789abcdefXYZ"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def test_import_answers_counts_and_an_item_per_entry(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    body = {"keys": [{"key": KEY, "name": "kong", "external_id": "alice"}, {"hash": digest("other-key-00000001")}]}

    first = await client.post(f"/v1/apis/{api['id']}/keys/import", json=body, headers=auth)
    again = await client.post(f"/v1/apis/{api['id']}/keys/import", json=body, headers=auth)

    assert first.status_code == 200
    answer = first.json()
    assert (answer["imported"], answer["skipped"]) == (2, 0)
    assert [(item["index"], item["status"]) for item in answer["items"]] == [(0, "imported"), (1, "imported")]
    assert KEY not in first.text
    assert again.json()["skipped"] == 2
    assert [item["id"] for item in again.json()["items"]] == [item["id"] for item in answer["items"]]
    shown = (await client.get(f"/v1/keys/{answer['items'][0]['id']}", headers=auth)).json()
    assert (shown["name"], shown["owner_id"], shown["start"]) == ("kong", "alice", "sk_l")


@pytest.mark.parametrize(
    ("entry", "code", "field"),
    [
        ({"hash": "abc"}, "invalid_hash", "/keys/17/hash"),
        ({"hash": {"value": "abc", "variant": "sha256_base64"}}, "invalid_hash", "/keys/17/hash"),
        ({"hash": {"value": digest("x"), "variant": "md5"}}, "invalid_request", "/keys/17/hash/variant"),
        ({"name": "no key"}, "key_or_hash", "/keys/17/key"),
        ({"key": ""}, "invalid_request", "/keys/17/key"),
        ({"key": "k" * 600}, "invalid_request", "/keys/17/key"),
        ({"key": KEY, "owner_id": "a", "external_id": "b"}, "invalid_request", "/keys/17/external_id"),
        ({"key": KEY, "bogus": 1}, "invalid_request", "/keys/17/bogus"),
    ],
)
async def test_an_invalid_entry_is_a_400_naming_its_index_and_nothing_is_imported(
    client: httpx.AsyncClient, auth: Headers, api: Json, entry: Json, code: str, field: str
) -> None:
    entries: list[Json] = [{"hash": digest(f"key-{i:04d}-abcdefgh")} for i in range(30)]
    entries[17] = entry

    response = await client.post(f"/v1/apis/{api['id']}/keys/import", json={"keys": entries}, headers=auth)

    body = problem(response, 400, code)
    assert (body["index"], body["field"]) == (17, field)
    assert KEY not in response.text
    assert (await client.get(f"/v1/apis/{api['id']}/keys", headers=auth)).json()["items"] == []


async def test_more_than_a_thousand_entries_or_none_is_a_400(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    for keys in ([], [{"hash": digest(str(i))} for i in range(1001)]):
        response = await client.post(f"/v1/apis/{api['id']}/keys/import", json={"keys": keys}, headers=auth)
        problem(response, 400, "invalid_request")


async def test_a_key_of_another_api_is_a_409_naming_its_index(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json
) -> None:
    await client.post(f"/v1/apis/{other_api['id']}/keys/import", json={"keys": [{"key": KEY}]}, headers=auth)

    response = await client.post(
        f"/v1/apis/{api['id']}/keys/import", json={"keys": [{"hash": digest("fresh-key-0001")}, {"key": KEY}]},
        headers=auth,
    )  # fmt: skip

    body = problem(response, 409, "key_in_other_api")
    assert body["index"] == 1
    assert other_api["id"] not in response.text


async def test_the_root_key_needs_keys_write_for_that_api(
    client: httpx.AsyncClient, grant: Grant, api: Json, other_api: Json
) -> None:
    body = {"keys": [{"key": KEY}]}
    reader = await grant("keys.read")
    problem(
        await client.post(f"/v1/apis/{api['id']}/keys/import", json=body, headers=reader),
        403,
        "insufficient_permissions",
    )
    scoped = await grant(f"api.{other_api['id']}.keys.write")
    problem(await client.post(f"/v1/apis/{api['id']}/keys/import", json=body, headers=scoped), 404, "not_found")
    allowed = await client.post(f"/v1/apis/{other_api['id']}/keys/import", json=body, headers=scoped)
    assert allowed.status_code == 200
