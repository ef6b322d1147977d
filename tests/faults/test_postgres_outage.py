"""PostgreSQL taken away from a running server under a steady load, for real (issue 8, finding 1; SPEC V6, L3, O1).

Server A reaches PostgreSQL through a TCP proxy of the test's own, which is cut (connections reset, new ones
refused) or blackholed (connections open, no byte through) for a few seconds; it has no Redis, so its cache hears
of changes by LISTEN/NOTIFY over that same broken link. Server B reaches PostgreSQL directly and makes changes
meanwhile. A steady load of verifications of cached keys runs against A throughout. The test asserts what SPEC V6
promises: cached keys keep verifying (every answer of the load VALID, by ``/v1/keys/verify`` and ``/v1/auth``),
writes and uncached keys get 503 problems within the database deadline, database credits are neither lost nor
double-counted, every verification answered is written to the log once the database is back, and A recovers with
no restart: its writes succeed again and a key revoked on B during the outage answers REVOKED on A.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.server import Server, serve
from tests.tcp_proxy import TcpProxy, through

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DATABASE_TIMEOUT_MS = 1000
OUTAGE_S = 4.0
DEADLINE_S = 30.0
CREDITS = 1000
Json = dict[str, Any]


def _env(tmp: Path, database_url: str) -> dict[str, str]:
    return {
        "KEYSTILE_DATABASE_URL": database_url,
        "KEYSTILE_DATA_DIR": str(tmp / "data"),
        "KEYSTILE_DATABASE_TIMEOUT_MS": str(DATABASE_TIMEOUT_MS),
        "KEYSTILE_EVENTS_FLUSH_MS": "200",
        "KEYSTILE_REDIS_URL": "",
    }


@pytest.fixture
def servers(tmp_path: Path, fresh_pg_url: str, pg_proxy: TcpProxy) -> Iterator[tuple[Server, Server]]:
    through_proxy = through(fresh_pg_url, pg_proxy)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = serve(tmp_path / "a", _env(tmp_path / "a", through_proxy), name="a")
    try:
        b = serve(tmp_path / "b", _env(tmp_path / "b", fresh_pg_url), name="b")
    except BaseException:
        a.stop()
        raise
    yield a, b
    codes = [running.stop() for running in (a, b)]  # both stopped before either is judged
    for running, code in zip((a, b), codes, strict=True):
        assert code == 0, running.output()
        for line in running.stderr().splitlines():
            record = json.loads(line)
            # asyncpg's pool logs failed reconnections with their traceback; nothing of Keystile's may have one.
            assert "exc" not in record or record["logger"].startswith("asyncpg"), line
            assert "ks_" not in line or "ks_root" not in line, "no key in the log"


@dataclass
class Load:
    """Verifications of cached keys at a steady pace, from a thread, until stopped."""

    requests: list[Callable[[httpx.Client], httpx.Response]]
    pause_s: float = 0.01
    answers: list[tuple[int, str, float]] = field(default_factory=list)
    """(request index, outcome, seconds taken)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, base_url: str) -> None:
        def run() -> None:
            with httpx.Client(base_url=base_url, timeout=DEADLINE_S) as http:
                index = 0
                while not self._stop.is_set():
                    which = index % len(self.requests)
                    began = time.monotonic()
                    answer = self.requests[which](http)
                    self.answers.append((which, _outcome(answer), time.monotonic() - began))
                    index += 1
                    time.sleep(self.pause_s)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> list[tuple[int, str, float]]:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(DEADLINE_S)
        return self.answers


def _outcome(answer: httpx.Response) -> str:
    """``200 VALID`` for the verify route, ``200`` for forward auth, else the status and the reason."""
    if answer.headers.get("content-type", "").endswith("json"):
        return f"{answer.status_code} {answer.json().get('code')}"
    return f"{answer.status_code} {answer.headers.get('x-keystile-code', '')}".strip()


def _until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S} s"
        time.sleep(0.05)


def _metric(server: Server, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def _events_of(url: str, key_id: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM events WHERE key_id = $1", key_id)
    finally:
        await conn.close()
    return count


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_a_database_outage_costs_cached_keys_nothing_and_heals_by_itself(
    servers: tuple[Server, Server], pg_proxy: TcpProxy, fresh_pg_url: str, fault: str
) -> None:
    a, b = servers
    root = {"Authorization": f"Bearer {a.root_key()}"}
    with (
        httpx.Client(base_url=a.url, headers=root, timeout=DEADLINE_S) as on_a,
        httpx.Client(base_url=b.url, headers=root, timeout=DEADLINE_S) as on_b,
    ):

        def create(http: httpx.Client, path: str, body: Json) -> Json:
            answer = http.post(path, json=body)
            assert answer.status_code in (200, 201), answer.text
            created: Json = answer.json()
            return created

        api = create(on_a, "/v1/apis", {"name": "outage"})
        alice = create(on_a, f"/v1/apis/{api['id']}/keys", {"name": "alice", "permissions": ["docs.read"]})
        bob = create(on_a, f"/v1/apis/{api['id']}/keys", {"name": "bob"})
        metered = create(on_a, f"/v1/apis/{api['id']}/keys", {"name": "metered", "credits": {"remaining": CREDITS}})
        unseen = create(on_b, f"/v1/apis/{api['id']}/keys", {"name": "never verified on A"})

        def verify(key: str, **extra: Any) -> Callable[[httpx.Client], httpx.Response]:
            return lambda http: http.post("/v1/keys/verify", json={"key": key, **extra}, headers=root)

        def auth(key: str) -> Callable[[httpx.Client], httpx.Response]:
            return lambda http: http.get(f"/v1/auth?api_id={api['id']}", headers={"Authorization": f"Bearer {key}"})

        load = Load([verify(alice["key"], permissions="docs.read"), auth(alice["key"]), verify(bob["key"])])
        for request in load.requests:  # warm A's cache
            assert _outcome(request(on_a)) == "200 VALID"
        spent = 0
        assert _outcome(verify(metered["key"])(on_a)) == "200 VALID"
        spent += 1
        _until("the warm-up written", lambda: _metric(a, "keystile_events_buffered") == 0)

        load.start(a.url)
        getattr(pg_proxy, fault)()
        outage_ends = time.monotonic() + OUTAGE_S
        try:
            _until("A noticing the outage", lambda: on_a.get("/readyz").status_code == 503)
            # B works on: a revocation that A cannot hear of until the database is back.
            assert on_b.post(f"/v1/keys/{bob['id']}/revoke").status_code == 200
            writes, uncached, credits = [], [], []
            while time.monotonic() < outage_ends:
                began = time.monotonic()
                answer = on_a.post(f"/v1/apis/{api['id']}/keys", json={"name": "during the outage"})
                writes.append((answer, time.monotonic() - began))
                uncached.append(verify(unseen["key"])(on_a))
                credits.append(verify(metered["key"])(on_a))
        finally:
            answers = load.stop()  # before the restore: what A answers once it can hear B again is checked below
            pg_proxy.restore()

        # Cached keys: every verification of the load answered as before the outage (bob's revocation was made
        # where A could not hear of it: served from A's cache until the database is back, as documented).
        assert len(answers) > 50
        assert {outcome for _, outcome, _ in answers} == {"200 VALID"}, sorted({o for _, o, _ in answers})
        assert _metric(a, "keystile_cache_stale_served_total") > 0

        # Writes: a 503 problem, each within the deadline of one database round trip (twice, for slack).
        for answer, took in writes:
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "storage_unavailable"
            assert took < 2 * DATABASE_TIMEOUT_MS / 1000 + 1, took
        assert {_outcome(answer) for answer in uncached} == {"503 storage_unavailable"}
        # Database credits never fail open: refused with 503 while the database is away, and not spent.
        assert {_outcome(answer) for answer in credits} == {"503 storage_unavailable"}

        # Recovery, without a restart: writes succeed again, and B's revocation reaches A.
        _until("A writing again", lambda: on_a.post("/v1/apis", json={"name": "after"}).status_code == 201)
        _until("bob REVOKED on A", lambda: _outcome(verify(bob["key"])(on_a)) == "200 REVOKED")
        assert _outcome(verify(unseen["key"])(on_a)) == "200 VALID"
        assert on_a.get("/readyz").status_code == 200
        for _ in range(5):
            assert _outcome(verify(metered["key"])(on_a)) == "200 VALID"
            spent += 1
        remaining = on_a.get(f"/v1/keys/{metered['id']}").json()["credits"]["remaining"]
        assert remaining == CREDITS - spent, "credits neither lost nor double-counted"

        # Events: every verification of alice answered during the outage is in the log once it is back.
        _until("the backlog written", lambda: _metric(a, "keystile_events_buffered") == 0)
        assert _metric(a, "keystile_events_dropped_total") == 0
    alice_answers = sum(1 for which, _, _ in answers if which in (0, 1))
    assert asyncio.run(_events_of(fresh_pg_url, alice["id"])) == alice_answers + 2  # and the warm-up's two
