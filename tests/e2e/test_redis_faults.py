"""A real ``keystile serve`` whose Redis goes silent (SPEC L2, O4): verifications keep answering, only those under
way when Redis went silent wait for it (once, for ``KEYSTILE_REDIS_TIMEOUT_MS``), ``/readyz`` answers 503 within
that deadline every time, and when Redis is back the server goes back to it by itself.

The server reaches a redis-server of the test's own through a TCP proxy that the test blackholes: connections stay
open and no byte goes through, as in a network partition. (``tests/limits/test_limits_redis_hang.py`` covers the
other faults, in process.)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.availability import require_tool
from tests.redis.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

from .server import Server, serve

pytestmark = pytest.mark.e2e

DEADLINE_MS = 200
DEADLINE_S = DEADLINE_MS / 1000
OUTAGE_S = 1.6
"""Long enough for four of the breaker's backoffs (0.1 s doubling) to end: each one used to mean another wait."""
IN_FLIGHT = 8
SCHEDULING_S = 1.0
"""HTTP and scheduling delays of a real server on a shared machine, beyond the deadline (the in-process test
holds /readyz to a tighter bound)."""
RECOVERY_S = 10.0
PREFIX = "e2e:"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require_tool("redis-server")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy(own_redis: RedisServer) -> Iterator[TcpProxy]:
    front = TcpProxy(("127.0.0.1", own_redis.port))
    yield front
    front.close()


@pytest.fixture
def server(tmp_path: Path, proxy: TcpProxy) -> Iterator[Server]:
    env = {
        "KEYSTILE_DATA_DIR": str(tmp_path / "data"),
        "KEYSTILE_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
        "KEYSTILE_REDIS_PREFIX": PREFIX,
        "KEYSTILE_REDIS_TIMEOUT_MS": str(DEADLINE_MS),
    }
    running = serve(tmp_path, env)
    yield running
    assert running.stop() == 0, running.output()


async def verify_for(http: httpx.AsyncClient, key: str, seconds: float) -> list[str]:
    """Verify ``key`` over :data:`IN_FLIGHT` connections for ``seconds``: the code of each answer."""
    codes: list[str] = []
    end = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            response = await http.post("/v1/keys/verify", json={"key": key})
            assert response.status_code == 200, response.text
            codes.append(response.json()["code"])

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return codes


async def readyz_during(http: httpx.AsyncClient, seconds: float) -> list[tuple[float, int, str]]:
    """Ask ``/readyz`` every tenth of a second for ``seconds``: (took, status, code) of each answer."""
    answers: list[tuple[float, int, str]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        asked = time.monotonic()
        response = await http.get("/readyz")
        answers.append((time.monotonic() - asked, response.status_code, response.json().get("code")))
        await asyncio.sleep(0.1)  # the outage lasts real time
    return answers


async def outage(server: Server, proxy: TcpProxy, key: str) -> tuple[list[str], list[tuple[float, int, str]]]:
    auth = {"Authorization": f"Bearer {server.root_key()}"}
    limits = httpx.Limits(max_connections=IN_FLIGHT + 1)
    async with httpx.AsyncClient(base_url=server.url, headers=auth, limits=limits, timeout=30) as http:
        before = await verify_for(http, key, 0.3)
        assert set(before) == {"VALID"}
        proxy.blackhole()
        try:
            during, readyz = await asyncio.gather(verify_for(http, key, OUTAGE_S), readyz_during(http, OUTAGE_S))
        finally:
            proxy.restore()
    return during, readyz


def waited(server: Server) -> int:
    """Verifications that took the server more than a tenth of a second (its latency histogram, which counts the
    time spent verifying, not HTTP's nor the machine's delays): those that waited on Redis."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    buckets = {
        sample.labels["le"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "keystile_verification_duration_seconds_bucket"
    }
    return int(buckets["+Inf"] - buckets["0.1"])


def test_a_silent_redis_costs_a_real_server_one_wait_and_it_recovers_by_itself(
    server: Server, proxy: TcpProxy, own_redis: RedisServer
) -> None:
    auth = {"Authorization": f"Bearer {server.root_key()}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
        api = http.post("/v1/apis", json={"name": "faults"}).json()["id"]
        limited = {"ratelimits": [{"name": "api", "limit": 1_000_000, "duration_ms": 60_000}]}
        key = http.post(f"/v1/apis/{api}/keys", json=limited).json()["key"]

        during, readyz = asyncio.run(outage(server, proxy, key))

        assert len(during) > 50, "the server kept answering"
        assert waited(server) <= IN_FLIGHT, "only the verifications under way when Redis went silent waited, once"
        assert set(during) == {"VALID"}, "fail open: local limits"
        assert len(readyz) >= 4
        for took, status, code in readyz:
            assert (status, code) == (503, "redis_unavailable")
            assert took < DEADLINE_S + SCHEDULING_S, f"/readyz took {took:.3f} s, past its deadline"

        deadline = time.monotonic() + RECOVERY_S
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, f"not ready again within {RECOVERY_S} s:\n{server.output()}"
            time.sleep(0.05)  # polling another process
        three = {"ratelimits": [{"name": "api", "limit": 3, "duration_ms": 60_000}]}
        fresh = http.post(f"/v1/apis/{api}/keys", json=three).json()
        codes = Counter(http.post("/v1/keys/verify", json={"key": fresh["key"]}).json()["code"] for _ in range(5))
        assert codes == {"VALID": 3, "RATE_LIMITED": 2}
    plain = redis.Redis(port=own_redis.port)
    try:
        assert plain.exists(f"{PREFIX}k:{fresh['id']}:api") == 1, "decided in Redis again"
    finally:
        plain.close()
    assert "Redis is unreachable" in server.stderr()
