"""Forward auth, ``/v1/auth`` (SPEC V5, S2): every status, header and option, trusted and untrusted proxies,
the failed-attempt limit, events, and no key anywhere but where it came from."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.errors import InvalidInput
from keystile.server import create_app
from keystile.service import Keystile

from .helpers import Headers, bearer

Json = dict[str, Any]
PROXY = ("127.0.0.1", 40000)  # loopback: a trusted proxy by default
STRANGER = ("203.0.113.9", 40000)
IDENTITY = ("x-keystile-key-id", "x-keystile-owner-id", "x-keystile-api-id")


@pytest.fixture
def connect(ks: Keystile, settings: Settings) -> Callable[..., Any]:
    """``async with connect(peer, **settings) as http``: the app with changed settings, called from ``peer``."""

    @asynccontextmanager
    async def make(peer: tuple[str, int] = PROXY, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(dataclasses.replace(settings, **changes), keystile=ks)
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url="http://keystile") as http:
            yield http

    return make


async def new_key(client: httpx.AsyncClient, auth: Headers, api: Json, **fields: Any) -> Json:
    response = await client.post(f"/v1/apis/{api['id']}/keys", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


def assert_unauthorized(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-keystile-code"] == code
    assert response.content == b""
    assert not any(name in response.headers for name in IDENTITY)


async def test_a_valid_key_passes_with_who_it_is_and_no_body(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = await new_key(client, auth, api, owner_id="user_42")

    for method in ("GET", "POST", "DELETE", "PATCH", "OPTIONS"):
        response = await client.request(method, f"/v1/auth?api_id={api['id']}", headers=bearer(key["key"]))
        assert response.status_code == 200, method
        assert response.content == b""
        assert response.headers["content-length"] == "0"
        assert response.headers["x-keystile-code"] == "VALID"
        assert response.headers["x-keystile-key-id"] == key["id"]
        assert response.headers["x-keystile-owner-id"] == "user_42"
        assert response.headers["x-keystile-api-id"] == api["id"]
        assert "ratelimit-limit" not in response.headers  # no limits, nothing to report


async def test_owner_ids_beyond_ascii_are_percent_encoded(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    key = await new_key(client, auth, api, owner_id="jürgen 50%")
    response = await client.get(f"/v1/auth?api_id={api['id']}", headers=bearer(key["key"]))
    assert response.headers["x-keystile-owner-id"] == "j%C3%BCrgen 50%25"
    key = await new_key(client, auth, api)
    response = await client.get(f"/v1/auth?api_id={api['id']}", headers=bearer(key["key"]))
    assert response.headers["x-keystile-owner-id"] == ""  # always there: Caddy 2.6 copies placeholders otherwise


async def test_the_key_is_read_from_each_channel_of_the_original_request(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    plain = (await new_key(client, auth, api))["key"]
    url = f"/v1/auth?api_id={api['id']}"
    channels = [
        {"X-API-Key": plain},
        {"X-Original-URI": f"/orders?page=2&api_key={plain}"},  # nginx
        {"X-Forwarded-Uri": f"/orders?api_key={plain}"},  # Traefik, Caddy
        {"Authorization": f"Bearer {plain}", "X-API-Key": plain},  # the same key twice is fine
    ]
    for headers in channels:
        assert (await client.get(url, headers=headers)).status_code == 200, headers


async def test_no_key_is_401_with_a_bearer_challenge(client: httpx.AsyncClient, api: Json) -> None:
    assert_unauthorized(await client.get(f"/v1/auth?api_id={api['id']}"), "missing_key")
    # Another scheme carries no key.
    response = await client.get(f"/v1/auth?api_id={api['id']}", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_unauthorized(response, "missing_key")


async def test_two_different_keys_are_ambiguous(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    one, two = (await new_key(client, auth, api))["key"], (await new_key(client, auth, api))["key"]
    response = await client.get(f"/v1/auth?api_id={api['id']}", headers={**bearer(one), "X-API-Key": two})
    assert_unauthorized(response, "ambiguous_credentials")


async def test_unknown_revoked_disabled_expired_and_foreign_keys_all_get_the_same_401(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json, root: Any
) -> None:
    revoked = await new_key(client, auth, api)
    assert (await client.post(f"/v1/keys/{revoked['id']}/revoke", headers=auth)).status_code == 200
    disabled = await new_key(client, auth, api, enabled=False)
    expired = await new_key(client, auth, api, expires_at="2020-01-01T00:00:00Z")
    foreign = await new_key(client, auth, other_api)
    cases = [
        ("ks_" + "x" * 38, "NOT_FOUND"),
        (foreign["key"], "NOT_FOUND"),
        (revoked["key"], "REVOKED"),
        (disabled["key"], "DISABLED"),
        (expired["key"], "EXPIRED"),
    ]
    for plain, code in cases:
        response = await client.get(f"/v1/auth?api_id={api['id']}", headers=bearer(plain))
        assert_unauthorized(response, code)
    # A root key never passes forward auth, even when the proxy names the root keys' API.
    response = await client.get("/v1/auth?api_id=api_root", headers=bearer(root[1]))
    assert_unauthorized(response, "NOT_FOUND")


async def test_a_missing_permission_is_403(client: httpx.AsyncClient, auth: Headers, api: Json) -> None:
    plain = (await new_key(client, auth, api, permissions=["docs.read"]))["key"]
    allowed = await client.get(f"/v1/auth?api_id={api['id']}&permissions=docs.read", headers=bearer(plain))
    assert allowed.status_code == 200

    refused = await client.get(
        f"/v1/auth?api_id={api['id']}&permissions=docs.read%20AND%20docs.write", headers=bearer(plain)
    )
    assert refused.status_code == 403
    assert refused.headers["x-keystile-code"] == "INSUFFICIENT_PERMISSIONS"
    assert refused.content == b""
    assert "www-authenticate" not in refused.headers


async def test_the_client_ip_comes_from_a_trusted_proxy_only(
    client: httpx.AsyncClient, auth: Headers, api: Json, connect: Callable[..., Any]
) -> None:
    plain = (await new_key(client, auth, api, ip_allowlist=["10.0.0.0/8"]))["key"]
    url = f"/v1/auth?api_id={api['id']}"
    async with connect(PROXY) as proxy:
        assert (await proxy.get(url, headers={**bearer(plain), "X-Forwarded-For": "10.1.2.3"})).status_code == 200
        assert (await proxy.get(url, headers={**bearer(plain), "X-Real-IP": "10.1.2.3"})).status_code == 200
        # The client wrote the left entry itself; the proxy appended the address it saw.
        spoofed = await proxy.get(url, headers={**bearer(plain), "X-Forwarded-For": "10.1.2.3, 198.51.100.7"})
        assert spoofed.status_code == 403
        assert spoofed.headers["x-keystile-code"] == "FORBIDDEN"
        # A chain of our own proxies is walked through.
        chained = await proxy.get(url, headers={**bearer(plain), "X-Forwarded-For": "10.1.2.3, 127.0.0.2"})
        assert chained.status_code == 200
        assert (await proxy.get(url, headers=bearer(plain))).status_code == 403  # loopback is not 10/8
    async with connect(STRANGER) as stranger:
        response = await stranger.get(url, headers={**bearer(plain), "X-Forwarded-For": "10.1.2.3"})
        assert response.status_code == 403  # not a proxy of ours: its headers are not believed
    async with connect(STRANGER, trusted_proxies=("203.0.113.0/24",)) as configured:
        response = await configured.get(url, headers={**bearer(plain), "X-Forwarded-For": "10.1.2.3"})
        assert response.status_code == 200


async def test_the_original_uri_is_believed_from_a_trusted_proxy_only(
    client: httpx.AsyncClient, auth: Headers, api: Json, connect: Callable[..., Any]
) -> None:
    plain = (await new_key(client, auth, api))["key"]
    async with connect(STRANGER) as stranger:
        response = await stranger.get(f"/v1/auth?api_id={api['id']}", headers={"X-Original-URI": f"/x?api_key={plain}"})
        assert_unauthorized(response, "missing_key")
        # Headers of the request itself are the stranger's own: it is the client.
        assert (await stranger.get(f"/v1/auth?api_id={api['id']}", headers=bearer(plain))).status_code == 200


async def test_rate_limits_are_reported_and_a_limited_key_gets_429_with_retry_after(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock
) -> None:
    limits = [{"name": "api", "limit": 2, "duration_ms": 10_000}]
    plain = (await new_key(client, auth, api, ratelimits=limits))["key"]
    url = f"/v1/auth?api_id={api['id']}"

    first = await client.get(url, headers=bearer(plain))
    assert first.status_code == 200
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
    assert first.headers["ratelimit-reset"] == "5"  # seconds until the bucket is full again
    second = await client.get(url, headers=bearer(plain))
    assert second.headers["ratelimit-remaining"] == "0"

    refused = await client.get(url, headers=bearer(plain))
    assert refused.status_code == 429
    assert refused.headers["x-keystile-code"] == "RATE_LIMITED"
    assert refused.headers["retry-after"] == "5"  # one request's worth comes back in 5 s
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.content == b""

    clock.advance(5)
    assert (await client.get(url, headers=bearer(plain))).status_code == 200


async def test_nginx_gets_403_instead_of_429_when_configured(
    client: httpx.AsyncClient, auth: Headers, api: Json, connect: Callable[..., Any]
) -> None:
    plain = (await new_key(client, auth, api, ratelimits=[{"name": "api", "limit": 1, "duration_ms": 60_000}]))["key"]
    async with connect(auth_limited_status=403) as nginx:
        assert (await nginx.get(f"/v1/auth?api_id={api['id']}", headers=bearer(plain))).status_code == 200
        refused = await nginx.get(f"/v1/auth?api_id={api['id']}", headers=bearer(plain))
    assert refused.status_code == 403
    assert refused.headers["x-keystile-code"] == "RATE_LIMITED"
    assert refused.headers["retry-after"] == "60"


async def test_credits_are_spent_by_cost_and_exhausted_ones_are_429(
    client: httpx.AsyncClient, auth: Headers, api: Json
) -> None:
    key = await new_key(client, auth, api, credits={"remaining": 5, "refill": {"amount": 5, "interval": "daily"}})
    url = f"/v1/auth?api_id={api['id']}"
    assert (await client.get(f"{url}&cost=4", headers=bearer(key["key"]))).status_code == 200
    assert (await client.get(f"{url}&cost=0", headers=bearer(key["key"]))).status_code == 200
    refused = await client.get(f"{url}&cost=2", headers=bearer(key["key"]))
    assert refused.status_code == 429
    assert refused.headers["x-keystile-code"] == "USAGE_EXCEEDED"
    assert refused.headers["retry-after"] == str(16 * 3600)  # the daily refill at midnight UTC (clock at 08:00)
    shown = (await client.get(f"/v1/keys/{key['id']}", headers=auth)).json()
    assert shown["credits"]["remaining"] == 1

    never_refilled = await new_key(client, auth, api, credits={"remaining": 0})
    refused = await client.get(url, headers=bearer(never_refilled["key"]))
    assert (refused.status_code, refused.headers["x-keystile-code"]) == (429, "USAGE_EXCEEDED")
    assert refused.headers["retry-after"] == "60"  # every 429 has one (SPEC V5): a minute, as the proxy says


async def test_options_are_checked_and_misconfiguration_is_loud(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json, connect: Callable[..., Any]
) -> None:
    plain = (await new_key(client, auth, api))["key"]
    cases = [
        ("/v1/auth", "missing_api_id"),
        (f"/v1/auth?api_id={api['id']}&permision=docs.read", "invalid_option"),
        (f"/v1/auth?api_id={api['id']}&api_key={plain}", "invalid_option"),
        (f"/v1/auth?api_id={api['id']}&cost=-1", "invalid_option"),
        (f"/v1/auth?api_id={api['id']}&permissions=docs.read%20AND", "invalid_permission_query"),
    ]
    for url, code in cases:
        response = await client.get(url, headers=bearer(plain))
        assert response.status_code == 400, url
        assert response.headers["x-keystile-code"] == code
        assert response.content == b""
    async with connect(auth_api_ids=(api["id"],)) as single:
        assert (await single.get("/v1/auth", headers=bearer(plain))).status_code == 200  # the one API is the default
    async with connect(auth_api_ids=(other_api["id"],)) as confined:
        response = await confined.get(f"/v1/auth?api_id={api['id']}", headers=bearer(plain))
        assert response.status_code == 400
        assert response.headers["x-keystile-code"] == "api_not_allowed"


async def test_envoy_appends_the_original_path(
    client: httpx.AsyncClient, auth: Headers, api: Json, connect: Callable[..., Any]
) -> None:
    plain = (await new_key(client, auth, api))["key"]
    async with connect(auth_api_ids=(api["id"],)) as envoy:
        assert (await envoy.get("/v1/auth/orders/7", headers=bearer(plain))).status_code == 200
        assert (await envoy.post(f"/v1/auth/orders?api_key={plain}")).status_code == 200
        assert_unauthorized(await envoy.get("/v1/auth/orders"), "missing_key")
    # Without a default API there is nowhere to put api_id: Envoy's query string is the client's.
    assert (await client.get(f"/v1/auth/orders?api_id={api['id']}", headers=bearer(plain))).status_code == 400
    # /v1/authx is some other (unknown) route.
    assert (await client.get("/v1/authx")).status_code == 404


async def test_failed_attempts_per_client_ip_are_limited(
    client: httpx.AsyncClient, auth: Headers, api: Json, clock: ManualClock, connect: Callable[..., Any]
) -> None:
    plain = (await new_key(client, auth, api))["key"]
    url = f"/v1/auth?api_id={api['id']}"
    guess = bearer("ks_" + "y" * 38)
    attacker = {"X-Forwarded-For": "198.51.100.66"}
    async with connect(auth_failures_per_minute=3) as proxy:
        for _ in range(5):  # requests without a key guess nothing and are not counted
            assert (await proxy.get(url, headers=attacker)).status_code == 401
        for _ in range(3):
            assert_unauthorized(await proxy.get(url, headers={**guess, **attacker}), "NOT_FOUND")
        blocked = await proxy.get(url, headers={**guess, **attacker})
        assert blocked.status_code == 429
        assert blocked.headers["x-keystile-code"] == "too_many_failures"
        assert blocked.headers["retry-after"] == "20"  # 3 a minute: one attempt back every 20 s
        # A blocked client learns nothing, not even with a valid key.
        assert (await proxy.get(url, headers={**bearer(plain), **attacker})).status_code == 429
        # Other clients are not affected.
        other = {"X-Forwarded-For": "198.51.100.67"}
        assert (await proxy.get(url, headers={**bearer(plain), **other})).status_code == 200

        clock.advance(20)
        assert (await proxy.get(url, headers={**bearer(plain), **attacker})).status_code == 200
        assert (await proxy.get(url, headers={**guess, **attacker})).status_code == 401
        assert (await proxy.get(url, headers={**guess, **attacker})).status_code == 429
    async with connect(auth_failures_per_minute=0) as unlimited:
        for _ in range(10):
            assert (await unlimited.get(url, headers={**guess, **attacker})).status_code == 401


async def test_the_failed_attempt_limit_follows_the_nginx_mapping(
    client: httpx.AsyncClient, api: Json, connect: Callable[..., Any]
) -> None:
    async with connect(auth_failures_per_minute=1, auth_limited_status=403) as nginx:
        guess = bearer("ks_" + "z" * 38)
        assert (await nginx.get(f"/v1/auth?api_id={api['id']}", headers=guess)).status_code == 401
        blocked = await nginx.get(f"/v1/auth?api_id={api['id']}", headers=guess)
    assert blocked.status_code == 403
    assert blocked.headers["x-keystile-code"] == "too_many_failures"


async def test_verifications_are_recorded_as_events_without_the_key(
    client: httpx.AsyncClient, auth: Headers, api: Json, ks: Keystile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = await new_key(client, auth, api)
    url = f"/v1/auth?api_id={api['id']}"
    headers = {"X-Forwarded-For": "192.0.2.10", "X-Forwarded-Method": "PUT"}
    assert (await client.get(url, headers={**bearer(key["key"]), **headers})).status_code == 200
    assert (await client.get(url, headers={**bearer(key["key"] + "x"), **headers})).status_code == 401
    await ks.events.flush()

    events = (await client.get("/v1/logs", params={"api_id": api["id"]}, headers=auth)).json()["items"]
    assert [e["outcome"] for e in events] == ["NOT_FOUND", "VALID"]
    valid = events[1]
    assert valid["key_id"] == key["id"]
    assert valid["ip"] == "192.0.2.10"
    assert valid["tags"] == ["forward_auth", "method:PUT"]
    assert key["key"] not in str(events)
    assert key["key"] not in caplog.text


async def test_forward_auth_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/auth"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["api_id", "permissions", "cost"]
    assert operation["security"] == []


async def test_a_server_that_has_not_opened_its_storage_answers_503(settings: Settings) -> None:
    app = create_app(settings)  # no services yet: the lifespan has not run
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keystile") as http:
        response = await http.get("/v1/auth?api_id=api_x", headers=bearer("ks_" + "x" * 38))
    assert response.status_code == 503
    assert response.headers["x-keystile-code"] == "not_ready"
    assert response.content == b""


async def test_oversized_headers_are_431_without_a_body(client: httpx.AsyncClient, api: Json) -> None:
    response = await client.get(f"/v1/auth?api_id={api['id']}", headers={"X-Padding": "p" * (17 * 1024)})
    assert response.status_code == 431
    assert response.headers["x-keystile-code"] == "headers_too_large"
    assert response.content == b""


async def test_storage_out_of_reach_for_an_uncached_key_is_503(
    client: httpx.AsyncClient, auth: Headers, api: Json, ks: Keystile, caplog: pytest.LogCaptureFixture
) -> None:
    plain = (await new_key(client, auth, api))["key"]
    ks.ctx.verifier.clear()
    await ks.storage.close()
    response = await client.get(f"/v1/auth?api_id={api['id']}", headers=bearer(plain))
    assert response.status_code == 503
    assert response.headers["x-keystile-code"] == "storage_unavailable"
    assert response.content == b""
    assert plain not in caplog.text


async def test_a_peer_without_an_address_is_a_client_without_one(
    client: httpx.AsyncClient, auth: Headers, api: Json, app: Any
) -> None:
    plain = (await new_key(client, auth, api))["key"]
    restricted = (await new_key(client, auth, api, ip_allowlist=["10.0.0.0/8"]))["key"]
    answers: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    for key in (plain, restricted):
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/v1/auth",
            "query_string": f"api_id={api['id']}".encode(),
            # A unix socket: no client address, so forwarding headers prove nothing either.
            "headers": [(b"authorization", f"Bearer {key}".encode()), (b"x-forwarded-for", b"10.1.2.3")],
            "client": None,
        }
        await app(scope, receive, send)
    assert [m["status"] for m in answers if m["type"] == "http.response.start"] == [200, 403]


def test_forward_auth_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "KEYSTILE_AUTH_API_IDS": "api_a, api_b,",
            "KEYSTILE_AUTH_LIMITED_STATUS": "403",
            "KEYSTILE_AUTH_FAILURES_PER_MINUTE": "0",
        }
    )
    assert settings.auth_api_ids == ("api_a", "api_b")
    assert settings.auth_limited_status == 403
    assert settings.auth_failures_per_minute == 0
    defaults = Settings()
    assert (defaults.auth_api_ids, defaults.auth_limited_status, defaults.auth_failures_per_minute) == ((), 429, 100)
    for variable, value in (("KEYSTILE_AUTH_LIMITED_STATUS", "500"), ("KEYSTILE_AUTH_FAILURES_PER_MINUTE", "-1")):
        with pytest.raises(InvalidInput) as caught:
            Settings.from_env({variable: value})
        assert caught.value.code == "invalid_setting"
        assert variable in caught.value.detail
