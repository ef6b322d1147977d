"""Hostile input over HTTP (SPEC S4): times past what four digits of a year can write, digits that are not ASCII,
repeated forward-auth options, bodies that end badly and request ids that carry keys. None of it may answer 500,
store anything or put a key where only the client's text should be."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest

from keystile.config import Settings
from keystile.core import keys as keyformat
from keystile.http.asgi import ASGIApp
from keystile.server import create_app
from keystile.service import Keystile

from .helpers import Headers, asgi_call, bearer, problem

Json = dict[str, Any]

# UTC years 10000 and 0000: each is a valid RFC 3339 text whose instant no 4-digit UTC year can write.
OUT_OF_RANGE = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"]
EDGES = {
    "0001-01-01T00:00:00Z": "0001-01-01T00:00:00.000Z",
    "0001-01-01T00:59:59+00:59": "0001-01-01T00:00:59.000Z",
    "9999-12-31T23:59:59.999Z": "9999-12-31T23:59:59.999Z",
    "9999-12-31T22:59:59-01:00": "9999-12-31T23:59:59.000Z",
}


def no_fault(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was logged as a fault (a 500 logs its traceback)."""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# -- times at the edge of the representable range (finding 2) ---------------------------------------------------


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_creating_a_key_that_expires_outside_years_1_to_9999_is_400_and_stores_nothing(
    client: httpx.AsyncClient, auth: Headers, api: Json, moment: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json={"expires_at": moment}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/expires_at"
    assert (await client.get(f"/v1/apis/{api['id']}/keys", headers=auth)).json()["items"] == []
    no_fault(caplog)


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_bulk_create_names_the_key_whose_expiry_is_out_of_range(
    client: httpx.AsyncClient, auth: Headers, api: Json, moment: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"keys": [{"name": "fine"}, {"expires_at": moment}]}
    response = await client.post(f"/v1/apis/{api['id']}/keys/bulk", json=body, headers=auth)

    refused = problem(response, 400, "invalid_request")
    assert (refused["field"], refused["index"]) == ("/keys/1/expires_at", 1)
    assert (await client.get(f"/v1/apis/{api['id']}/keys", headers=auth)).json()["items"] == []
    no_fault(caplog)


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_patching_an_expiry_out_of_range_is_400_and_changes_nothing(
    client: httpx.AsyncClient, auth: Headers, key: Json, moment: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.patch(f"/v1/keys/{key['id']}", json={"expires_at": moment}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/expires_at"
    assert (await client.get(f"/v1/keys/{key['id']}", headers=auth)).json()["expires_at"] is None
    no_fault(caplog)


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_rerolling_into_an_expiry_out_of_range_is_400_and_keeps_the_old_key(
    client: httpx.AsyncClient, auth: Headers, key: Json, moment: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.post(f"/v1/keys/{key['id']}/reroll", json={"expires_at": moment}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/expires_at"
    kept = (await client.get(f"/v1/keys/{key['id']}", headers=auth)).json()
    assert (kept["rotated_to"], kept["expires_at"]) == (None, None)
    no_fault(caplog)


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_a_root_key_expiring_out_of_range_is_400_and_not_created(
    client: httpx.AsyncClient, auth: Headers, moment: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"permissions": ["keys.read"], "expires_at": moment}
    response = await client.post("/v1/root-keys", json=body, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/expires_at"
    assert len((await client.get("/v1/root-keys", headers=auth)).json()["items"]) == 1  # the first one only
    no_fault(caplog)


async def test_times_at_the_edges_are_kept_and_written_with_four_digit_years(
    client: httpx.AsyncClient, auth: Headers, api: Json, key: Json
) -> None:
    for given, written in EDGES.items():
        created = await client.post(f"/v1/apis/{api['id']}/keys", json={"expires_at": given}, headers=auth)
        assert created.status_code == 201, created.text
        assert created.json()["expires_at"] == written
        patched = await client.patch(f"/v1/keys/{key['id']}", json={"expires_at": given}, headers=auth)
        assert patched.json()["expires_at"] == written
        root = await client.post(
            "/v1/root-keys", json={"permissions": ["keys.read"], "expires_at": given}, headers=auth
        )
        assert root.json()["expires_at"] == written


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("until=9999-12-31T23:59:59Z", "until"),  # the hour it ends in ends in year 10000
        ("until=0001-01-01T00:00:00Z", "until"),  # the default 24 hours before it start in year 0
        ("since=0001-01-01T00:00:00Z&until=0001-01-01T00:00:00.001Z&granularity=day", None),  # fine
        ("until=9999-12-31T23:00:00Z", None),  # fine: ends on the last hour of 9999
        ("until=10000-01-01T00:00:00Z", "until"),
        ("since=0000-12-31T00:00:00Z", "since"),
    ],
)
async def test_analytics_ranges_past_the_representable_years_are_400(
    client: httpx.AsyncClient, auth: Headers, query: str, field: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get(f"/v1/analytics/verifications?{query}", headers=auth)

    if field is None:
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["since"]) == len(body["until"]) == len("2030-01-01T00:00:00.000Z")
    else:
        assert problem(response, 400, "invalid_parameter")["field"] == field
    no_fault(caplog)


@pytest.mark.parametrize("moment", [*OUT_OF_RANGE, "10000-01-01T00:00:00Z"])
async def test_log_and_audit_filters_outside_the_representable_years_are_400(
    client: httpx.AsyncClient, auth: Headers, moment: str
) -> None:
    for path in ("/v1/logs", "/v1/audit"):
        for name in ("since", "until"):
            response = await client.get(path, params={name: moment}, headers=auth)
            assert problem(response, 400, "invalid_parameter")["field"] == name


# -- digits that are not ASCII (finding 3) ---------------------------------------------------------------------


@pytest.mark.parametrize("cost", ["%C2%B2", "%D9%A3", "%EF%BC%93", "9" * 5000, "%2B1", "%201"])
async def test_forward_auth_takes_a_cost_in_ascii_digits_only(
    client: httpx.AsyncClient, api: Json, key: Json, cost: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get(f"/v1/auth?api_id={api['id']}&cost={cost}", headers=bearer(key["key"]))

    assert response.status_code == 400
    assert response.headers["x-keystile-code"] == "invalid_option"
    no_fault(caplog)


@pytest.mark.parametrize("length", ["²".encode(), "٣".encode(), b"\xef\xbc\x93", b"+3", b"-1", b"3 ", b""])
@pytest.mark.parametrize("path", ["/v1/keys/verify", "/v1/apis"])
async def test_a_content_length_that_is_not_ascii_digits_is_not_believed(
    app: ASGIApp, auth: Headers, key: Json, path: str, length: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"key": "%s"}' % key["key"].encode() if path == "/v1/keys/verify" else b'{"name": "x"}'
    headers = [(b"authorization", auth["Authorization"].encode()), (b"content-length", length)]

    answer = await asgi_call(app, "POST", path, headers, [{"type": "http.request", "body": body}])

    assert answer.status in (200, 201), answer  # the body is read as it comes, not as declared
    no_fault(caplog)


@pytest.mark.parametrize("path", ["/v1/keys/verify", "/v1/apis"])
async def test_a_content_length_of_thousands_of_digits_is_413(
    app: ASGIApp, auth: Headers, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = [(b"authorization", auth["Authorization"].encode()), (b"content-length", b"9" * 5000)]

    answer = await asgi_call(app, "POST", path, headers, [{"type": "http.request", "body": b"{}"}])

    assert answer.status == 413, answer
    assert httpx.Response(413, content=answer.body).json()["code"] == "payload_too_large"
    no_fault(caplog)


@pytest.mark.parametrize("cursor", ["²", "٣", "9" * 5000, "9" * 40])
async def test_an_audit_cursor_in_other_digits_is_400(
    client: httpx.AsyncClient, auth: Headers, cursor: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/v1/audit", params={"cursor": cursor}, headers=auth)

    assert problem(response, 400, "invalid_cursor")["field"] == "cursor"
    no_fault(caplog)


@pytest.mark.parametrize("limit", ["²", "٣", "\uff13", "9" * 5000])
async def test_a_limit_in_other_digits_is_400(client: httpx.AsyncClient, auth: Headers, limit: str) -> None:
    for path in ("/v1/apis", "/v1/audit", "/v1/logs", "/v1/root-keys"):
        response = await client.get(path, params={"limit": limit}, headers=auth)
        assert problem(response, 400, "invalid_parameter")["field"] == "limit"


# -- repeated or empty forward-auth options (finding 4) ----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        "api_id={api}&permissions=admin&permissions=",  # the last one would have checked nothing
        "api_id={api}&permissions=admin&permissions=docs.read",
        "api_id={api}&api_id={other}",
        "api_id={other}&api%5Fid={api}",  # the same name, percent-encoded
        "api_id={api}&cost=0&cost=1",
        "api_id={api}&permissions=",  # explicitly empty: a configuration that checks nothing by mistake
        "api_id={api}&permissions",
        "api_id=&api_id={api}",
    ],
)
async def test_forward_auth_refuses_repeated_or_empty_options(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json, options: str
) -> None:
    plain = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()["key"]
    query = options.format(api=api["id"], other=other_api["id"])

    response = await client.get(f"/v1/auth?{query}", headers=bearer(plain))

    assert response.status_code == 400, query
    assert response.headers["x-keystile-code"] == "invalid_option"
    assert response.content == b""


async def test_an_explicitly_empty_api_id_does_not_fall_back_to_the_default(
    ks: Keystile, settings: Settings, auth: Headers, api: Json, client: httpx.AsyncClient
) -> None:
    plain = (await client.post(f"/v1/apis/{api['id']}/keys", json={}, headers=auth)).json()["key"]
    app = create_app(dataclasses.replace(settings, auth_api_ids=(api["id"],)), keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k") as single:
        assert (await single.get("/v1/auth", headers=bearer(plain))).status_code == 200
        response = await single.get("/v1/auth?api_id=", headers=bearer(plain))
    assert response.status_code == 400
    assert response.headers["x-keystile-code"] == "invalid_option"


# -- bodies that end badly (finding 5; over a real socket in tests/e2e/test_hostile_bodies.py) ---------------


@pytest.mark.parametrize("path", ["/v1/keys/verify", "/v1/apis"])
async def test_a_body_that_ends_before_it_is_complete_is_a_400_problem(
    app: ASGIApp, auth: Headers, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # What granian hands over when a chunked body has a bad chunk size, or the client leaves mid-body.
    headers = [(b"authorization", auth["Authorization"].encode()), (b"x-request-id", b"trace-1")]
    answer = await asgi_call(app, "POST", path, headers, [{"type": "http.request", "body": b'{"ke', "more_body": True}])

    assert answer.status == 400, answer
    assert answer.headers["content-type"] == "application/problem+json"
    body = httpx.Response(400, content=answer.body).json()
    assert (body["code"], body["request_id"]) == ("incomplete_body", "trace-1")
    assert answer.headers["x-request-id"] == "trace-1"
    no_fault(caplog)


# -- request ids that carry keys (finding 8) ----------------------------------------------------------------------


async def _logged_request_ids(client: httpx.AsyncClient, auth: Headers, ks: Keystile) -> list[str]:
    await ks.events.flush()
    return [item["request_id"] for item in (await client.get("/v1/logs", headers=auth)).json()["items"]]


async def test_a_request_id_that_is_the_verified_key_is_replaced_everywhere(
    client: httpx.AsyncClient, auth: Headers, key: Json, ks: Keystile, caplog: pytest.LogCaptureFixture
) -> None:
    imported_shape = "sk_live_" + "a1B2" * 6  # not Keystile's shape: only equality can tell
    plain = key["key"]
    for sent in (plain, imported_shape):
        response = await client.post("/v1/keys/verify", json={"key": sent}, headers={**auth, "X-Request-Id": sent})
        assert response.status_code == 200
        assert sent not in response.headers.get("x-request-id", "")
        failed = await client.post(
            "/v1/keys/verify", json={"key": sent, "ip": "not an ip"}, headers={**auth, "X-Request-Id": sent}
        )
        refused = problem(failed, 400, "invalid_ip")
        assert refused["request_id"] != sent
        assert failed.headers["x-request-id"] == refused["request_id"]
    logged = await _logged_request_ids(client, auth, ks)
    assert len(logged) == 2
    assert plain not in logged
    assert imported_shape not in logged
    assert plain not in caplog.text


@pytest.mark.parametrize(
    "shape",
    [
        "{key}",
        "trace.{key}",
        "{key}-1",
        "{root}",
        "x_{body}",  # what a key looks like after its prefix: 38 letters and digits after an underscore
    ],
)
async def test_a_request_id_shaped_like_a_key_is_never_echoed_stored_or_logged(
    client: httpx.AsyncClient,
    auth: Headers,
    key: Json,
    ks: Keystile,
    root: Any,
    shape: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = keyformat.generate("ks")  # a key, but not the one being verified
    sent = shape.format(key=other, root=root[1], body=other.rpartition("_")[2])
    caplog.set_level(logging.DEBUG)

    verified = await client.post("/v1/keys/verify", json={"key": key["key"]}, headers={**auth, "X-Request-Id": sent})
    managed = await client.get("/v1/apis", headers={**auth, "X-Request-Id": sent})
    refused = await client.get("/v1/apis", headers={"X-Request-Id": sent})

    assert verified.status_code == 200
    assert managed.headers["x-request-id"].startswith("req_")
    assert problem(refused, 401, "missing_root_key")["request_id"].startswith("req_")
    assert refused.headers["x-request-id"].startswith("req_")
    logged = await _logged_request_ids(client, auth, ks)
    assert logged
    assert sent not in logged
    assert other not in caplog.text
    assert root[1] not in caplog.text


@pytest.mark.parametrize("sane", ["trace-42.a_b", "req_" + "0" * 32, "0" * 128, "a_" + "0" * 37])
async def test_a_sane_request_id_is_kept(
    client: httpx.AsyncClient, auth: Headers, key: Json, ks: Keystile, sane: str
) -> None:
    verified = await client.post("/v1/keys/verify", json={"key": key["key"]}, headers={**auth, "X-Request-Id": sane})
    managed = await client.get("/v1/apis", headers={**auth, "X-Request-Id": sane})

    assert verified.status_code == 200
    assert managed.headers["x-request-id"] == sane
    assert await _logged_request_ids(client, auth, ks) == [sane]
