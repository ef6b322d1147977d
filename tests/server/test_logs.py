"""``GET /v1/logs`` and ``GET /v1/analytics/verifications`` over HTTP: shapes, paging, scoping, bad parameters.

Events are written straight into storage here (``tests/analytics/helpers.py``); ``test_traffic.py`` makes them by
verifying keys.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keystile.core.timefmt import from_rfc3339
from keystile.service import Keystile
from tests.analytics.helpers import DAY, HOUR, T0, event, write_events

from .conftest import Grant
from .helpers import Headers, problem

Json = dict[str, Any]


@pytest.fixture
async def traffic(ks: Keystile, api: Json, other_api: Json, key: Json) -> list[Any]:
    """Events at T0 - 1 h, -59 min, ...: 40 of ``key`` (every fourth REVOKED), 10 of ``other_api``."""
    events = [
        event(T0 - HOUR + i * 60_000, "REVOKED" if i % 4 == 0 else "VALID", api_id=api["id"], key_id=key["id"],
              owner_id="alice", ip="10.1.2.3", tags=(f"n={i}",), request_id=f"req_{i}")
        for i in range(40)
    ] + [event(T0 - HOUR + i * 60_000 + 7, "NOT_FOUND", api_id=other_api["id"]) for i in range(10)]  # fmt: skip
    await write_events(ks.storage, events)
    return events


async def test_events_are_listed_newest_first_in_their_wire_shape(
    client: httpx.AsyncClient, auth: Headers, key: Json, traffic: list[Any]
) -> None:
    response = await client.get("/v1/logs", params={"key_id": key["id"], "limit": 3}, headers=auth)

    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"]
    newest = body["items"][0]
    assert newest == {
        "id": newest["id"],
        "ts": "2027-01-15T07:39:00.000Z",
        "request_id": "req_39",
        "api_id": key["api_id"],
        "key_id": key["id"],
        "owner_id": "alice",
        "outcome": "VALID",
        "ip": "10.1.2.3",
        "tags": ["n=39"],
        "latency_us": 42,
    }
    assert newest["id"].startswith("evt_")
    assert [from_rfc3339(item["ts"]) for item in body["items"]] == [T0 - HOUR + i * 60_000 for i in (39, 38, 37)]


async def test_filters_combine_and_pages_cover_every_event_once(
    client: httpx.AsyncClient, auth: Headers, api: Json, traffic: list[Any]
) -> None:
    params: Json = {
        "api_id": api["id"],
        "outcome": "REVOKED",
        "since": "2027-01-15T07:05:00Z",
        "until": "2027-01-15T07:35:00+00:00",
        "limit": 2,
    }
    seen: list[str] = []
    while True:
        body = (await client.get("/v1/logs", params=params, headers=auth)).json()
        seen.extend(item["ts"][11:16] for item in body["items"])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == ["07:32", "07:28", "07:24", "07:20", "07:16", "07:12", "07:08"]


async def test_a_root_key_scoped_to_one_api_sees_its_events_and_nothing_of_others(
    client: httpx.AsyncClient, grant: Grant, api: Json, other_api: Json, key: Json, traffic: list[Any]
) -> None:
    scoped = await grant(f"api.{api['id']}.analytics.read")

    mine = (await client.get("/v1/logs", params={"limit": 1000}, headers=scoped)).json()["items"]
    assert len(mine) == 40
    assert {item["api_id"] for item in mine} == {api["id"]}
    foreign_api = await client.get("/v1/logs", params={"api_id": other_api["id"]}, headers=scoped)
    problem(foreign_api, 404, "api_not_found")
    counts = await client.get("/v1/analytics/verifications", params={"api_id": other_api["id"]}, headers=scoped)
    problem(counts, 404, "api_not_found")


async def test_a_key_of_another_api_is_not_found_for_a_scoped_root_key(
    client: httpx.AsyncClient, auth: Headers, grant: Grant, other_api: Json, key: Json
) -> None:
    scoped = await grant(f"api.{other_api['id']}.analytics.read")
    for path in ("/v1/logs", "/v1/analytics/verifications"):
        problem(await client.get(path, params={"key_id": key["id"]}, headers=scoped), 404, "key_not_found")
        assert (await client.get(path, params={"key_id": key["id"]}, headers=auth)).status_code == 200


async def test_a_root_key_without_analytics_read_is_forbidden(client: httpx.AsyncClient, grant: Grant) -> None:
    blind = await grant("keys.read", "keys.verify")
    for path in ("/v1/logs", "/v1/analytics/verifications"):
        problem(await client.get(path, headers=blind), 403, "insufficient_permissions")
        problem(await client.get(path), 401, "missing_root_key")


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"outcome": "ok"}, "invalid_parameter", "outcome"),
        ({"since": "yesterday"}, "invalid_parameter", "since"),
        ({"until": "2030-01-01T00:00:00"}, "invalid_parameter", "until"),
        ({"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}, "invalid_parameter", "since"),
        ({"key_id": ""}, "invalid_parameter", "key_id"),
        ({"limit": "0"}, "invalid_limit", "limit"),
        ({"limit": "ten"}, "invalid_parameter", "limit"),
        ({"cursor": "yesterday"}, "invalid_cursor", "cursor"),
        ({"keyid": "key_x"}, "unknown_parameter", "keyid"),
        ({"granularity": "hour"}, "unknown_parameter", "granularity"),
    ],
)
async def test_bad_log_parameters_are_400s_naming_the_parameter(
    client: httpx.AsyncClient, auth: Headers, params: Json, code: str, field: str
) -> None:
    response = await client.get("/v1/logs", params=params, headers=auth)
    assert problem(response, 400, code)["field"] == field


async def test_counts_per_bucket_and_group_in_their_wire_shape(
    client: httpx.AsyncClient, auth: Headers, api: Json, traffic: list[Any]
) -> None:
    params = {
        "api_id": api["id"],
        "granularity": "hour",
        "since": "2027-01-15T06:30:00Z",
        "until": "2027-01-15T08:00:00Z",
    }
    response = await client.get("/v1/analytics/verifications", params=params, headers=auth)

    assert response.status_code == 200
    assert response.json() == {
        "granularity": "hour",
        "group_by": "outcome",
        "since": "2027-01-15T06:00:00.000Z",
        "until": "2027-01-15T08:00:00.000Z",
        "items": [
            {"ts": "2027-01-15T07:00:00.000Z", "group": "REVOKED", "count": 10},
            {"ts": "2027-01-15T07:00:00.000Z", "group": "VALID", "count": 30},
        ],
    }


async def test_counts_by_key_name_no_key_for_not_found(
    client: httpx.AsyncClient, auth: Headers, key: Json, traffic: list[Any]
) -> None:
    params = {"granularity": "day", "group_by": "key", "since": "2027-01-15T00:00:00Z", "until": "2027-01-16T00:00:00Z"}
    body = (await client.get("/v1/analytics/verifications", params=params, headers=auth)).json()
    assert body["items"] == [
        {"ts": "2027-01-15T00:00:00.000Z", "group": None, "count": 10},
        {"ts": "2027-01-15T00:00:00.000Z", "group": key["id"], "count": 40},
    ]


async def test_without_a_range_counts_cover_the_last_day_by_hour(
    client: httpx.AsyncClient, auth: Headers, traffic: list[Any]
) -> None:
    body = (await client.get("/v1/analytics/verifications", headers=auth)).json()
    assert (from_rfc3339(body["since"]), from_rfc3339(body["until"])) == (T0 + HOUR - DAY, T0 + HOUR)
    assert sum(item["count"] for item in body["items"]) == 50


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"granularity": "second"}, "invalid_parameter", "granularity"),
        ({"group_by": "ip"}, "invalid_parameter", "group_by"),
        ({"outcome": "GONE"}, "invalid_parameter", "outcome"),
        ({"since": "2020-01-01T00:00:00Z"}, "invalid_parameter", "since"),
        ({"since": "2030-01-01T00:00:00Z"}, "invalid_parameter", "since"),
        ({"until": "tomorrow"}, "invalid_parameter", "until"),
        ({"cursor": "x"}, "unknown_parameter", "cursor"),
    ],
)
async def test_bad_analytics_parameters_are_400s_naming_the_parameter(
    client: httpx.AsyncClient, auth: Headers, params: Json, code: str, field: str
) -> None:
    response = await client.get("/v1/analytics/verifications", params=params, headers=auth)
    assert problem(response, 400, code)["field"] == field


async def test_both_routes_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    logs = paths["/v1/logs"]["get"]
    counts = paths["/v1/analytics/verifications"]["get"]
    assert {p["name"] for p in logs["parameters"]} >= {"api_id", "key_id", "owner_id", "outcome", "since", "until"}
    assert {p["name"] for p in counts["parameters"]} >= {"granularity", "group_by", "since", "until"}
    assert logs["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/EventOutPage")
