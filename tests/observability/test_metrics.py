"""``GET /metrics``: the Prometheus text format, read back with prometheus-client's parser, moving as the app
serves verifications."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from keystile.config import Settings
from keystile.core import keys as keyformat
from keystile.core.clock import ManualClock
from keystile.server import create_app
from keystile.service import Keystile
from tests.redis.redis_server import RedisServer

from .conftest import bearer, samples, scrape, value

NAME_RE = re.compile(r"(keystile|process|python)_[a-z0-9_]+")


async def verify(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> str:
    response = await client.post("/v1/keys/verify", json=body, headers=auth)
    assert response.status_code == 200, response.text
    code: str = response.json()["code"]
    return code


async def test_metrics_answer_the_prometheus_text_format_without_a_root_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(response.text)
    assert value(found, "keystile_build_info", version="0.1.0") == 1
    assert value(found, "keystile_services_open") == 1
    assert value(found, "process_resident_memory_bytes") > 0


async def test_every_metric_has_help_and_type_and_follows_the_naming_conventions(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text

    helps = set(re.findall(r"^# HELP (\S+) \S", text, re.MULTILINE))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert helps == set(types)
    for name, kind in types.items():
        assert NAME_RE.fullmatch(name), name
        if kind == "counter":
            assert name.endswith("_total"), name
    keystile = {name for name in types if name.startswith("keystile_")}
    assert {
        "keystile_cache_hits_total",
        "keystile_cache_misses_total",
        "keystile_cache_negative_hits_total",
        "keystile_cache_stale_served_total",
    } <= keystile


async def test_cache_counters_move_with_verifications(
    client: httpx.AsyncClient, auth: dict[str, str], key: dict[str, Any]
) -> None:
    before = await scrape(client)

    assert await verify(client, auth, key=key["key"]) == "VALID"  # read from storage, then cached
    assert await verify(client, auth, key=key["key"]) == "VALID"
    assert await verify(client, auth, key=key["key"], permissions="docs.write") == "INSUFFICIENT_PERMISSIONS"
    unknown = keyformat.generate("ks")  # well formed, so storage is asked once, then it is remembered as unknown
    assert await verify(client, auth, key=unknown) == "NOT_FOUND"
    assert await verify(client, auth, key=unknown) == "NOT_FOUND"

    after = await scrape(client)
    moved = {
        name: value(after, name) - value(before, name)
        for name in ("keystile_cache_hits_total", "keystile_cache_misses_total", "keystile_cache_negative_hits_total")
    }
    assert moved == {
        "keystile_cache_hits_total": 5 + 2,  # the root key of each of the 5 requests, and the key twice
        "keystile_cache_misses_total": 2,
        "keystile_cache_negative_hits_total": 1,
    }


async def test_an_app_still_opening_its_storage_says_so(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'keystile.db'}"))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        found = await scrape(client)

    assert value(found, "keystile_services_open") == 0
    assert not any(name.startswith("keystile_cache_") for name, _ in found)


async def test_rate_limit_backend_counters_move_when_redis_fails(
    redis_ks: Keystile, own_redis: RedisServer, clock: ManualClock
) -> None:
    created = await redis_ks.root_keys.bootstrap()
    assert created is not None
    auth = bearer(created[1])
    app = create_app(Settings(database_url="memory://"), keystile=redis_ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        api = (await client.post("/v1/apis", json={"name": "limited"}, headers=auth)).json()
        limit = {"name": "requests", "limit": 100, "duration_ms": 60_000}
        response = await client.post(
            f"/v1/apis/{api['id']}/keys", json={"name": "k", "ratelimits": [limit]}, headers=auth
        )
        plain = response.json()["key"]
        assert await verify(client, auth, key=plain) == "VALID"
        before = await scrape(client)
        assert value(before, "keystile_redis_round_trips_total") >= 1
        assert value(before, "keystile_change_bus_connected") == 1

        own_redis.stop()
        assert await verify(client, auth, key=plain) == "VALID"  # fails open: decided in this process

        after = await scrape(client)
    assert (
        value(after, "keystile_ratelimit_backend_errors_total")
        - value(before, "keystile_ratelimit_backend_errors_total")
        == 1
    )
    assert (
        value(after, "keystile_ratelimit_local_fallbacks_total")
        - value(before, "keystile_ratelimit_local_fallbacks_total")
        == 1
    )
    assert value(after, "keystile_redis_errors_total") > value(before, "keystile_redis_errors_total")
    assert value(after, "keystile_ratelimit_closed_refusals_total") == 0
