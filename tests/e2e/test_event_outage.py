"""Verification events, Done when 3 (SPEC O1, O4): cutting the database away from a real ``keystile serve`` for a
while loses no event that fits in the buffer, and the drop counter of ``/metrics`` matches what was dropped
beyond it.

The server reaches PostgreSQL through a TCP proxy of the test's own (``tcp_proxy.py``), which is cut: open
connections end mid-conversation and new ones are closed on arrival. Keys stay served from the cache (its
invalidation runs over Redis, which stays up), so verifications keep answering; their events pile up in a buffer
of 500 until the proxy is restored and the writer catches up.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keystile.core import keys as keyformat
from keystile.storage.postgresql import MAX_BACKOFF_S
from tests.availability import missing
from tests.tcp_proxy import TcpProxy, through

from .server import REDIS_URL, Server, redis_available, serve

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

CAPACITY = 500
SENT = 800
DEADLINE_S = 90.0
READY_SLACK_S = 5.0
"""Beyond the breaker's longest backoff, what /readyz may take to turn 200 on a loaded, shared machine."""
Json = dict[str, Any]


@pytest.fixture
def server(tmp_path: Path, fresh_pg_url: str, pg_proxy: TcpProxy) -> Iterator[Server]:
    if not redis_available():
        missing(f"Redis at {REDIS_URL}")
    through_proxy = through(fresh_pg_url, pg_proxy)
    env = {
        "KEYSTILE_DATABASE_URL": through_proxy,
        "KEYSTILE_DATA_DIR": str(tmp_path / "data"),
        "KEYSTILE_REDIS_URL": REDIS_URL,
        "KEYSTILE_REDIS_PREFIX": f"test:{secrets.token_hex(6)}:",
        "KEYSTILE_EVENTS_BUFFER": str(CAPACITY),
        "KEYSTILE_EVENTS_FLUSH_MS": "200",
        "KEYSTILE_CACHE_TTL_MS": "600000",
    }
    running = serve(tmp_path, env)
    yield running
    assert running.stop() == 0, running.output()
    for line in running.stderr().splitlines():
        record = json.loads(line)
        assert record["level"] in ("debug", "info", "warning"), line
        # asyncpg's pool logs each failed reconnection with its traceback; nothing of Keystile's may have one.
        assert "exc" not in record or record["logger"] == "asyncpg.pool", line


def metrics(server: Server) -> dict[str, float]:
    """The unlabelled samples of ``/metrics``."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def wait_for(server: Server, what: str, check: Any) -> dict[str, float]:
    """Poll ``/metrics`` until ``check(samples)`` holds (another process is at work: no fixed sleep)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = metrics(server)
        if check(found):
            return found
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S} s; {found}\n{server.output()}"
        time.sleep(0.05)


def ready_within(http: httpx.Client, seconds: float) -> bool:
    """Whether ``/readyz`` answers 200 within ``seconds`` (polled; a 503 meanwhile is the breaker's backoff)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = http.get("/readyz")
        if answer.status_code == 200:
            assert answer.json() == {"status": "ready"}, answer.text
            return True
        assert answer.status_code == 503, answer.text
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


async def stored(url: str) -> dict[str, Json]:
    """The events stored during the cut, by request id, read straight from PostgreSQL (not through the proxy)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT request_id, outcome, key_id, api_id FROM events WHERE request_id LIKE 'cut_%'")
    finally:
        await conn.close()
    return {row["request_id"]: dict(row) for row in rows}


def test_a_database_outage_loses_no_event_that_fits_and_counts_every_drop(
    server: Server, pg_proxy: TcpProxy, fresh_pg_url: str
) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.root_key()}"}) as http:

        def create(path: str, body: Json) -> Json:
            answer = http.post(path, json=body)
            assert answer.status_code in (200, 201), answer.text
            created: Json = answer.json()
            return created

        api = create("/v1/apis", {"name": "outage"})
        other = create("/v1/apis", {"name": "elsewhere"})
        alice = create(f"/v1/apis/{api['id']}/keys", {"name": "alice", "permissions": ["docs.read"]})
        gone = create(f"/v1/apis/{api['id']}/keys", {"name": "gone"})
        create(f"/v1/keys/{gone['id']}/revoke", {})
        off = create(f"/v1/apis/{api['id']}/keys", {"name": "off", "enabled": False})
        carol = create(f"/v1/apis/{other['id']}/keys", {"name": "carol"})
        real = keyformat.generate("ks")
        forged = real[:-1] + ("A" if real[-1] != "A" else "B")
        # (request body, expected outcome, expected key id): every one answerable from the cache alone.
        plan: list[tuple[Json, str, str | None]] = [
            ({"key": alice["key"]}, "VALID", alice["id"]),
            ({"key": alice["key"], "permissions": "docs.write"}, "INSUFFICIENT_PERMISSIONS", alice["id"]),
            ({"key": gone["key"]}, "REVOKED", gone["id"]),
            ({"key": off["key"]}, "DISABLED", off["id"]),
            ({"key": carol["key"]}, "VALID", carol["id"]),
            ({"key": carol["key"], "api_id": api["id"]}, "NOT_FOUND", None),
            ({"key": forged}, "NOT_FOUND", None),  # a wrong checksum: never a storage lookup
        ]

        def verify(index: int) -> None:
            body, outcome, _ = plan[index % len(plan)]
            answer = http.post("/v1/keys/verify", json=body, headers={"X-Request-Id": f"cut_{index}"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["code"] == outcome, (index, answer.text)

        for body, _, _ in plan:  # warm the cache
            assert http.post("/v1/keys/verify", json=body).status_code == 200
        before = wait_for(server, "the warm-up written", lambda m: m["keystile_events_written_total"] >= len(plan))
        assert before["keystile_events_buffered"] == 0
        assert before["keystile_events_buffer_capacity"] == CAPACITY

        pg_proxy.cut()
        for index in range(SENT):
            verify(index)
        assert http.get("/readyz").status_code == 503
        during = wait_for(
            server,
            "failed writes while cut",
            lambda m: m["keystile_events_write_errors_total"] >= before["keystile_events_write_errors_total"] + 2,
        )
        assert during["keystile_events_buffered"] == CAPACITY
        assert during["keystile_events_dropped_total"] == SENT - CAPACITY
        assert during["keystile_events_written_total"] == before["keystile_events_written_total"]

        pg_proxy.restore()
        after = wait_for(server, "the backlog written", lambda m: m["keystile_events_buffered"] == 0)
        # The events were written by the writer process; the server's own breaker may still be in its backoff
        # (at most MAX_BACKOFF_S), after which its next trial finds the database back: ready without a restart.
        assert ready_within(http, MAX_BACKOFF_S + READY_SLACK_S), f"/readyz still 503:\n{server.output()}"

    assert after["keystile_events_dropped_total"] == SENT - CAPACITY
    assert after["keystile_events_written_total"] == before["keystile_events_written_total"] + CAPACITY
    assert after["keystile_events_rejected_total"] == 0
    assert pg_proxy.refused > 0  # the cut really turned connections away
    events = asyncio.run(stored(fresh_pg_url))
    assert sorted(events) == sorted(f"cut_{index}" for index in range(CAPACITY))  # the first 500, no other
    for index in range(CAPACITY):
        _, outcome, key_id = plan[index % len(plan)]
        event = events[f"cut_{index}"]
        assert (event["outcome"], event["key_id"]) == (outcome, key_id), event
