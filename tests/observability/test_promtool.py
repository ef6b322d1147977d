"""``promtool check metrics`` (Prometheus's own linter, Debian package ``prometheus``) accepts ``/metrics`` as
an app serves it after verifications (the event and verification families included), with and without Redis."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx

from keystile.config import Settings
from keystile.core import keys as keyformat
from keystile.server import create_app
from keystile.service import Keystile

from .conftest import bearer


def check(promtool: str, text: str) -> None:
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"promtool exited {done.returncode}:\n{done.stdout}{done.stderr}"


async def serve_some(client: httpx.AsyncClient, auth: dict[str, str], key: str) -> None:
    for body in ({"key": key}, {"key": key, "permissions": "docs.write"}, {"key": keyformat.generate("ks")}):
        assert (await client.post("/v1/keys/verify", json=body, headers=auth)).status_code == 200


async def test_promtool_accepts_the_metrics_of_an_app_that_served_verifications(
    promtool: str, client: httpx.AsyncClient, auth: dict[str, str], key: dict[str, Any]
) -> None:
    await serve_some(client, auth, key["key"])

    text = (await client.get("/metrics")).text
    for family in (
        "keystile_verifications_total{",
        "keystile_verification_duration_seconds_bucket{",
        "keystile_events_buffered ",
        "keystile_events_buffer_capacity ",
        "keystile_events_dropped_total ",
        "keystile_events_written_total ",
        "keystile_events_last_flush_timestamp_seconds ",
    ):
        assert family in text, family
    check(promtool, text)


async def test_promtool_accepts_the_metrics_of_an_app_with_redis(promtool: str, redis_ks: Keystile) -> None:
    created = await redis_ks.root_keys.bootstrap()
    assert created is not None
    auth = bearer(created[1])
    app = create_app(Settings(database_url="memory://"), keystile=redis_ks)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        api = (await client.post("/v1/apis", json={"name": "limited"}, headers=auth)).json()
        limit = {"name": "requests", "limit": 100, "duration_ms": 60_000}
        body = {"name": "k", "ratelimits": [limit], "credits": {"remaining": 10}}
        plain = (await client.post(f"/v1/apis/{api['id']}/keys", json=body, headers=auth)).json()["key"]
        await serve_some(client, auth, plain)
        text = (await client.get("/metrics")).text

    assert "keystile_redis_round_trips_total" in text
    check(promtool, text)
