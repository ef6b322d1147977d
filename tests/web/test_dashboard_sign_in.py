"""The dashboard's sign-in cannot be used to guess root keys (SPEC D1, S-series): failed sign-ins count toward
the same per-address limit as forward auth (``KEYSTILE_AUTH_FAILURES_PER_MINUTE``); past it the address is
answered 429 with ``Retry-After`` before any key is looked at, the right key included, until a unit is back."""

from __future__ import annotations

import dataclasses
import re

import httpx

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.server.app import create_app
from keystile.service import Actor, Keystile

PER_MINUTE = 3


async def sign_in(http: httpx.AsyncClient, root_key: str) -> httpx.Response:
    form = await http.get("/dashboard/sign-in")
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match is not None, form.text
    return await http.post("/dashboard/sign-in", data={"csrf": match.group(1), "root_key": root_key})


async def test_failed_sign_ins_are_limited_per_address(
    ks: Keystile, root: tuple[Actor, str], settings: Settings, clock: ManualClock
) -> None:
    app = create_app(dataclasses.replace(settings, auth_failures_per_minute=PER_MINUTE), keystile=ks)
    attacker = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 4000)), base_url="http://keystile"
    )
    neighbour = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.8", 4000)), base_url="http://keystile"
    )
    async with attacker, neighbour:
        for attempt in range(PER_MINUTE):
            answer = await sign_in(attacker, f"ks_root_guess{attempt}")
            assert answer.status_code == 401
            assert "unknown, revoked or expired" in answer.text

        answer = await sign_in(attacker, "ks_root_guess_again")
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "20"
        assert "Too many failed sign-ins" in answer.text

        # Blocked: the right key is refused too (nothing is learnt while blocked), but not from another address.
        right = await sign_in(attacker, root[1])
        assert right.status_code == 429
        assert "keystile_session" not in right.cookies
        elsewhere = await sign_in(neighbour, root[1])
        assert elsewhere.status_code == 303

        clock.advance(21)  # one unit back
        answer = await sign_in(attacker, root[1])
        assert answer.status_code == 303
        assert answer.headers["location"].endswith("/apis")
        assert "keystile_session" in answer.cookies


async def test_with_no_limit_failed_sign_ins_are_never_blocked(
    ks: Keystile, root: tuple[Actor, str], settings: Settings
) -> None:
    app = create_app(dataclasses.replace(settings, auth_failures_per_minute=0), keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keystile") as http:
        for attempt in range(10):
            assert (await sign_in(http, f"ks_root_guess{attempt}")).status_code == 401
        assert (await sign_in(http, root[1])).status_code == 303


async def test_a_dashboard_session_does_not_authorise_the_json_api(
    ks: Keystile, root: tuple[Actor, str], settings: Settings
) -> None:
    """The JSON API reads bodies whatever their Content-Type says, so a page on another site could post one as
    ``text/plain`` from a signed-in browser: the session cookie goes along, and must not count as a root key."""
    app = create_app(settings, keystile=ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keystile") as http:
        assert (await sign_in(http, root[1])).status_code == 303
        assert "keystile_session" in http.cookies
        assert (await http.get("/dashboard/apis")).status_code == 200  # signed in

        forged = await http.post(
            "/v1/apis", content=b'{"name": "forged"}', headers={"Content-Type": "text/plain", "Origin": "https://evil"}
        )
        assert forged.status_code == 401
        assert forged.headers["content-type"] == "application/problem+json"
        assert forged.json()["code"] == "missing_root_key"
        listed = await http.get("/v1/apis", headers={"Authorization": f"Bearer {root[1]}"})
        assert [api["name"] for api in listed.json()["items"]] == []

        # The same body with a root key is read as JSON, as the API documentation says.
        made = await http.post(
            "/v1/apis",
            content=b'{"name": "plain text"}',
            headers={"Content-Type": "text/plain", "Authorization": f"Bearer {root[1]}"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["name"] == "plain text"
