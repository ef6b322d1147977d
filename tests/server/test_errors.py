"""S4: every error is problem+json with a code; size limits on bodies and headers; faults reveal nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from keystile.config import Settings
from keystile.server import create_app
from keystile.service import Keystile

from .helpers import Headers, problem

Json = dict[str, Any]
LIMIT = 1024


@pytest.fixture
async def small(ks: Keystile) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with the smallest body and header limits."""
    settings = Settings(database_url="memory://", max_body_bytes=LIMIT, max_header_bytes=LIMIT)
    app = create_app(settings, keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def _chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 256):
        yield b" " * 256


# -- 413 / 431 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/apis", "/v1/keys/verify"])
async def test_a_declared_body_over_the_limit_is_413(small: httpx.AsyncClient, auth: Headers, path: str) -> None:
    body = b'{"name": "' + b"x" * LIMIT + b'"}'

    problem(await small.post(path, content=body, headers=auth), 413, "payload_too_large")


@pytest.mark.parametrize("path", ["/v1/apis", "/v1/keys/verify"])
async def test_a_streamed_body_over_the_limit_is_413(small: httpx.AsyncClient, auth: Headers, path: str) -> None:
    response = await small.post(path, content=_chunks(4 * LIMIT), headers=auth)

    problem(response, 413, "payload_too_large")


async def test_a_body_within_the_limit_is_served(small: httpx.AsyncClient, auth: Headers) -> None:
    assert (await small.post("/v1/apis", json={"name": "x" * 200}, headers=auth)).status_code == 201


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/apis"), ("POST", "/v1/keys/verify"), ("GET", "/healthz")])
async def test_headers_over_the_limit_are_431(small: httpx.AsyncClient, auth: Headers, method: str, path: str) -> None:
    headers = {**auth, "X-Padding": "p" * LIMIT}

    problem(await small.request(method, path, json={"key": "k"}, headers=headers), 431, "headers_too_large")


# -- 500 -----------------------------------------------------------------------------------------------------


async def test_a_fault_is_500_without_a_trace_and_is_logged(
    client: httpx.AsyncClient, auth: Headers, ks: Keystile, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(ks.apis, "list", broken)

    with caplog.at_level(logging.ERROR, logger="keystile.server"):
        response = await client.get("/v1/apis", headers=auth)

    body = problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert "hunter2" in caplog.text  # the operators still get the details
    assert body["request_id"] in caplog.text


async def test_a_fault_on_the_verify_path_is_500_without_a_trace(
    client: httpx.AsyncClient, auth: Headers, ks: Keystile, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(ks.verification, "verify", broken)

    response = await client.post("/v1/keys/verify", json={"key": "k"}, headers=auth)

    problem(response, 500, "internal_error")
    assert "secret detail" not in response.text
    assert "ZeroDivisionError" not in response.text


# -- 503 -----------------------------------------------------------------------------------------------------


async def test_storage_that_is_gone_is_503(client: httpx.AsyncClient, auth: Headers, ks: Keystile) -> None:
    await ks.storage.close()

    problem(await client.get("/v1/apis", headers=auth), 503, "storage_unavailable")
    problem(
        await client.post("/v1/keys/verify", json={"key": "an-imported-key-shape"}, headers=auth),
        503,
        "storage_unavailable",
    )


# -- routing -------------------------------------------------------------------------------------------------


async def test_an_unknown_route_is_a_404_problem_that_does_not_echo_the_path(
    client: httpx.AsyncClient, key: Json
) -> None:
    response = await client.get(f"/v9/verify/{key['key']}")

    problem(response, 404, "route_not_found")
    assert key["key"] not in response.text


async def test_a_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient, auth: Headers) -> None:
    response = await client.put("/v1/apis", headers=auth)

    problem(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}


# -- request ids ---------------------------------------------------------------------------------------------


async def test_management_answers_carry_a_request_id(client: httpx.AsyncClient, auth: Headers) -> None:
    ok = await client.get("/v1/apis", headers=auth)
    given = await client.get("/v1/apis", headers={**auth, "X-Request-Id": "abc-123"})
    insane = await client.get("/v1/apis", headers={**auth, "X-Request-Id": "no spaces <allowed>"})

    assert ok.headers["x-request-id"].startswith("req_")
    assert given.headers["x-request-id"] == "abc-123"
    assert insane.headers["x-request-id"].startswith("req_")


async def test_a_problem_carries_the_same_request_id_as_its_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/apis", headers={"X-Request-Id": "r" * 128})

    assert problem(response, 401, "missing_root_key")["request_id"] == "r" * 128
    assert response.headers["x-request-id"] == "r" * 128


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/apis"), ("POST", "/v1/keys/verify"), ("POST", "/v2/apis.listKeys")]
)
async def test_two_different_authorization_headers_take_neither(
    client: httpx.AsyncClient, auth: Headers, method: str, path: str
) -> None:
    root = auth["Authorization"]
    body = {"key": "ks_unknown", "apiId": "api_x"} if path.startswith("/v2") else {"key": "ks_unknown"}
    for pair in ([root, "Bearer ks_root_nope"], ["Bearer ks_root_nope", root]):
        response = await client.request(
            method, path, headers=[("Authorization", value) for value in pair], json=body if method == "POST" else None
        )
        assert response.status_code == 401, response.text
        if not path.startswith("/v2"):  # Unkey's routes answer in Unkey's shape
            problem(response, 401, "ambiguous_credentials")
    # The same root key twice is one root key.
    twice = await client.request(
        method, path, headers=[("Authorization", root)] * 2, json=body if method == "POST" else None
    )
    assert twice.status_code != 401, twice.text
