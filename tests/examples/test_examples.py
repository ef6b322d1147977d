"""Each example API (FastAPI, Starlette, Flask) behind Keystile, verifying through a real server and straight
against its database (SQLite and PostgreSQL): who gets in, who does not, and with which answer."""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import Example

pytestmark = pytest.mark.e2e


def _problem(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["request_id"]


def test_a_valid_key_gets_in_and_its_identity_reaches_the_handler(example: Example) -> None:
    reader = example.deployment.reader
    answer = httpx.get(f"{example.url}/notes", headers={"Authorization": f"Bearer {reader.key}"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["owner_id"] == "alice"
    assert answer.json()["key_id"] == reader.id


def test_the_key_may_travel_as_x_api_key_or_in_the_query(example: Example) -> None:
    key = example.deployment.reader.key
    assert httpx.get(f"{example.url}/notes", headers={"X-API-Key": key}).status_code == 200
    assert httpx.get(f"{example.url}/notes", params={"api_key": key}).status_code == 200
    other = example.deployment.nothing.key
    _problem(
        httpx.get(f"{example.url}/notes", headers={"X-API-Key": key, "Authorization": f"Bearer {other}"}),
        401,
        "ambiguous_credentials",
    )


def test_no_key_is_a_401_with_a_bearer_challenge(example: Example) -> None:
    answer = httpx.get(f"{example.url}/notes")

    _problem(answer, 401, "missing_key")
    assert answer.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{example.url}/healthz").status_code == 200  # open routes stay open


def test_a_revoked_or_unknown_key_is_a_401(example: Example) -> None:
    revoked = httpx.get(f"{example.url}/notes", headers={"Authorization": f"Bearer {example.deployment.revoked.key}"})
    _problem(revoked, 401, "invalid_key")
    assert revoked.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    unknown = httpx.get(f"{example.url}/notes", headers={"Authorization": "Bearer ks_1234567890"})
    _problem(unknown, 401, "invalid_key")


def test_a_key_without_the_permission_is_a_403(example: Example) -> None:
    answer = httpx.get(f"{example.url}/notes", headers={"Authorization": f"Bearer {example.deployment.nothing.key}"})
    _problem(answer, 403, "insufficient_permissions")


def test_a_key_revoked_on_the_server_stops_working_within_the_cache_ttls(example: Example) -> None:
    fresh = example.deployment.new_reader()
    headers = {"Authorization": f"Bearer {fresh.key}"}
    assert httpx.get(f"{example.url}/notes", headers=headers).status_code == 200
    with example.deployment.client() as keystile:
        keystile.revoke_key(fresh.id)

    # Polling another process until a deadline: the caches hold answers for 300 ms each.
    deadline = time.monotonic() + 10
    while (status := httpx.get(f"{example.url}/notes", headers=headers).status_code) == 200:
        assert time.monotonic() < deadline, "the revoked key still works after 10 s"
        time.sleep(0.05)
    assert status == 401


def test_verifications_are_logged_whichever_way_they_went(example: Example) -> None:
    fresh = example.deployment.new_reader()
    assert httpx.get(f"{example.url}/notes", headers={"Authorization": f"Bearer {fresh.key}"}).status_code == 200

    # Local verifications are written by the example's own process, in batches: poll until a deadline.
    deadline = time.monotonic() + 10
    with example.deployment.client() as keystile:
        while not (events := keystile.list_logs(key_id=fresh.id).items):
            assert time.monotonic() < deadline, "no event after 10 s"
            time.sleep(0.1)
    assert [(event.outcome, event.owner_id) for event in events] == [("VALID", "bob")]
