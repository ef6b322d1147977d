"""When Redis hangs (connections stay open and nothing comes back: a network partition, a frozen server) or is cut
(SPEC L2, L3, O4): a verification waits for Redis at most once per outage, for the deadline
(``KEYSTILE_REDIS_TIMEOUT_MS``); every other one answers at once as configured; ``/readyz`` answers 503 within the
deadline each time it is asked; and once Redis is back the process goes back to it by itself, without a restart.

The services run in process, over HTTP, on the real clock (the deadline and the probes that find Redis back are
real time), against a redis-server of the test's own behind a TCP proxy that the test blackholes or cuts, or frozen
with SIGSTOP. The outage lasts long enough for several of the breaker's backoffs (0.1 s doubling to 1 s) to pass:
before the fix, each of them let verifications wait for the silent Redis again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from keystile.config import Settings
from keystile.core.clock import SystemClock
from keystile.limits.redis import RedisSpender
from keystile.redis.connection import RedisConnection
from keystile.server import create_app
from keystile.service import Keystile
from tests.redis.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

DEADLINE_MS = 200
DEADLINE_S = DEADLINE_MS / 1000
OUTAGE_S = 1.6
"""Long enough for four of the breaker's backoffs to end (after 0.1, 0.2, 0.4 and 0.8 s)."""
IN_FLIGHT = 8
"""Verifications under way at any moment: at most these can be waiting on Redis when it goes silent."""
WAITED_S = DEADLINE_S * 3 / 4
"""An answer this slow waited on Redis for (most of) the deadline: one that does not takes milliseconds, unless
the machine, shared with other work, did not run this process for a while."""
TICK_S = 0.01
STALL_S = TICK_S + DEADLINE_S / 2
"""A tick of :class:`Stalls` this late means the loop did not run for long enough to make an answer look like a
wait on Redis (:data:`WAITED_S`) together with the milliseconds it takes anyway."""
SCHEDULING_S = 0.3
"""The event loop's own delays on a busy machine (the load runs in this process), beyond the deadline."""
READYZ_SLACK_S = 0.7
"""What /readyz may take beyond its deadline here: it queues behind the in-process load on the same event loop,
and on a busy machine that was seen to reach 0.6 s. Still under the fixed second every check used to wait."""
RECOVERY_S = 10.0
"""How long the test polls for the background probe to find Redis back (polling another process)."""
NOTICED_S = 1.0 + 2 * DEADLINE_S + SCHEDULING_S
"""The change subscription PINGs a Redis quiet for a second and drops it when no answer comes within the deadline
(it looks for messages every deadline)."""
PREFIX = "t:"


@dataclass
class Answer:
    started: float
    took: float
    code: str


@dataclass
class Service:
    """The services over memory storage with rate limits on Redis, reached over HTTP in process."""

    ks: Keystile
    http: httpx.AsyncClient
    auth: dict[str, str]
    api_id: str

    @property
    def redis(self) -> RedisConnection:
        spender = self.ks.ctx.verifier.spender
        assert isinstance(spender, RedisSpender)
        return spender.redis

    async def key(self, **fields: Any) -> dict[str, Any]:
        response = await self.http.post(f"/v1/apis/{self.api_id}/keys", json=fields, headers=self.auth)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def verify(self, key: str) -> Answer:
        started = time.monotonic()
        response = await self.http.post("/v1/keys/verify", json={"key": key}, headers=self.auth)
        assert response.status_code == 200, response.text
        answer = Answer(started, time.monotonic() - started, response.json()["code"])
        # A verification that needs no I/O never yields in process; over sockets the server would.
        await asyncio.sleep(0)
        return answer

    async def burst(self, key: str, n: int) -> list[Answer]:
        """``n`` verifications of ``key``, :data:`IN_FLIGHT` at a time."""
        answers: list[Answer] = []

        async def worker(share: int) -> None:
            for _ in range(share):
                answers.append(await self.verify(key))

        await asyncio.gather(*(worker(n // IN_FLIGHT + (i < n % IN_FLIGHT)) for i in range(IN_FLIGHT)))
        return answers

    async def backend_errors(self) -> float:
        """What ``/metrics`` says: verifications that tried Redis and met a failure."""
        metrics = await self.http.get("/metrics")
        for line in metrics.text.splitlines():
            if line.startswith("keystile_ratelimit_backend_errors_total "):
                return float(line.split()[1])
        return 0.0

    async def bus_connected(self) -> bool:
        """What ``/metrics`` says: whether this process hears the changes made by the others."""
        metrics = await self.http.get("/metrics")
        return "keystile_change_bus_connected 1.0" in metrics.text.splitlines()

    async def recovered(self) -> None:
        """Wait until the connection's background probe has found Redis back (nothing else asks it)."""
        deadline = time.monotonic() + RECOVERY_S
        while self.redis.breaker.down:
            assert time.monotonic() < deadline, f"Redis was not found back within {RECOVERY_S} s"
            await asyncio.sleep(0.02)  # polling the probe of another process's availability


@dataclass
class Load:
    """Verifications of one key, :data:`IN_FLIGHT` at a time, until the block ends."""

    service: Service
    key: str
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _warm: asyncio.Event = field(default_factory=asyncio.Event)
    _warm_at: int = 0

    async def _worker(self) -> None:
        while not self._stop.is_set():
            self.answers.append(await self.service.verify(self.key))
            if len(self.answers) >= self._warm_at:
                self._warm.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        workers = [asyncio.ensure_future(self._worker()) for _ in range(IN_FLIGHT)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*workers)

    async def reach(self, count: int) -> None:
        """Wait for the first ``count`` answers."""
        self._warm_at = count
        await self._warm.wait()


class Fault:
    """Takes the test's Redis away and gives it back: ``blackhole`` (the proxy holds every byte), ``sigstop``
    (the server is frozen) or ``cut`` (connections reset, new ones closed at once)."""

    def __init__(self, kind: str, proxy: TcpProxy, server: RedisServer) -> None:
        self.kind, self._proxy, self._server = kind, proxy, server
        self.on = False

    def begin(self) -> None:
        self.on = True
        if self.kind == "blackhole":
            self._proxy.blackhole()
        elif self.kind == "sigstop":
            self._server.pause()
        else:
            self._proxy.cut()

    def end(self) -> None:
        if not self.on:
            return
        self.on = False
        if self.kind == "sigstop":
            self._server.resume()
        else:
            self._proxy.restore()


@pytest.fixture
def proxy(own_redis: RedisServer) -> Iterator[TcpProxy]:
    front = TcpProxy(("127.0.0.1", own_redis.port))
    yield front
    front.close()


@pytest.fixture
async def plain(own_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's Redis, straight to it (not through the proxy)."""
    client = aioredis.Redis(port=own_redis.port)
    yield client
    await client.aclose()


@asynccontextmanager
async def service(proxy: TcpProxy, **options: Any) -> AsyncIterator[Service]:
    settings = Settings(
        database_url="memory://",
        redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        redis_prefix=PREFIX,
        redis_timeout_ms=DEADLINE_MS,
        events=False,  # its writer shares the in-memory database with key loads: only Redis may make them wait
        **options,
    )
    ks = await Keystile.open(settings, SystemClock())
    try:
        await ks.storage.migrate()
        created = await ks.root_keys.bootstrap()
        assert created is not None
        auth = {"Authorization": f"Bearer {created[1]}"}
        app = create_app(settings, keystile=ks)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            response = await http.post("/v1/apis", json={"name": "hang"}, headers=auth)
            assert response.status_code == 201, response.text
            yield Service(ks, http, auth, response.json()["id"])
    finally:
        await ks.close()


def waited(answers: list[Answer], began: float, ended: float, stalls: Stalls | None = None) -> list[Answer]:
    """The answers of the outage (under way at some moment of it) that waited on Redis: slow ones, but for those
    that were under way while this process did not run (see :class:`Stalls`)."""
    return [
        a
        for a in answers
        if a.started + a.took > began
        and a.started < ended
        and a.took >= WAITED_S
        and not (stalls and stalls.during(a.started, a.started + a.took))
    ]


class Stalls:
    """The moments this process's event loop did not run for :data:`STALL_S` or more: a shared machine that did
    not schedule it, or a garbage collection. An answer under way then may look as slow as a wait on Redis
    without having waited on it; a wait on Redis never stalls the loop, so it is never among them."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            if now - last >= STALL_S:
                self.seen.append((last, now))
            last = now

    def during(self, start: float, end: float) -> bool:
        return any(stall_start < end and start < stall_end for stall_start, stall_end in self.seen)

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[Stalls]:
        self._task = asyncio.ensure_future(self._tick())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@pytest.mark.parametrize(
    ("kind", "on_failure", "refusal"),
    [
        ("blackhole", "open", "VALID"),
        ("blackhole", "closed", "RATE_LIMITED"),
        ("sigstop", "open", "VALID"),
        ("cut", "open", "VALID"),
        ("cut", "closed", "RATE_LIMITED"),
    ],
)
async def test_a_verification_waits_for_a_lost_redis_at_most_once_and_readyz_answers_within_the_deadline(
    kind: str, on_failure: str, refusal: str, proxy: TcpProxy, own_redis: RedisServer, plain: aioredis.Redis
) -> None:
    fault = Fault(kind, proxy, own_redis)
    try:
        async with service(proxy, ratelimit_on_redis_failure=on_failure) as svc:
            key = await svc.key(ratelimits=[{"name": "api", "limit": 1_000_000, "duration_ms": 60_000}])
            readyz: list[tuple[float, int, str]] = []
            async with Stalls().watching() as stalls, Load(svc, key["key"]).running() as load:
                await load.reach(20)  # through Redis
                errors = await svc.backend_errors()
                began = time.monotonic()
                fault.begin()
                while time.monotonic() - began < OUTAGE_S:
                    asked = time.monotonic()
                    response = await svc.http.get("/readyz")
                    readyz.append((time.monotonic() - asked, response.status_code, response.json().get("code")))
                    await asyncio.sleep(0.1)  # the outage lasts real time: the deadline and probes are real time
                ended = time.monotonic()
                errors = await svc.backend_errors() - errors
            # Redis comes back once the load has stopped: the TCP proxy's threads share this process's GIL with
            # the load, and a Redis restored under it could be slow enough to count as down again.
            fault.end()

            during = [a for a in load.answers if began < a.started < ended]
            assert len(during) > 50, "the load went on through the outage"
            assert errors <= IN_FLIGHT, f"{errors:g} verifications tried the lost Redis (and may have waited for it)"
            slow = [(round(a.started - began, 3), round(a.took, 3)) for a in waited(load.answers, began, ended, stalls)]
            # The exact count is the server's (above); seen from the client, a pause of this shared machine can make
            # an answer look as slow as a wait (seen once: 0.216 s at 1.4 s into the outage, with no error), so
            # answers under way during a pause of this process are not counted.
            assert len(slow) <= IN_FLIGHT, (
                f"{len(slow)} verifications waited on the lost Redis (when, for how long: {slow}; this process "
                f"did not run for {[(round(s - began, 3), round(e - s, 3)) for s, e in stalls.seen]}); "
                f"only the {IN_FLIGHT} under way when it went may wait, once"
            )
            settled = Counter(a.code for a in during if a.started > began + DEADLINE_S)
            assert settled == {refusal: settled.total()}, f"KEYSTILE_RATELIMIT_ON_REDIS_FAILURE={on_failure}"

            assert len(readyz) >= 4
            for took, status, code in readyz:
                assert (status, code) == (503, "redis_unavailable")
                assert took < DEADLINE_S + READYZ_SLACK_S, f"/readyz took {took:.3f} s, past its deadline"

            await svc.recovered()
            assert (await svc.http.get("/readyz")).status_code == 200
            fresh = await svc.key(ratelimits=[{"name": "api", "limit": 3, "duration_ms": 60_000}])
            codes = Counter([(await svc.verify(fresh["key"])).code for _ in range(5)])
            assert codes == {"VALID": 3, "RATE_LIMITED": 2}
            assert await plain.exists(f"{PREFIX}k:{fresh['id']}:api") == 1, "decided in Redis again"
    finally:
        fault.end()


@pytest.mark.parametrize("kind", ["blackhole", "sigstop"])
async def test_redis_credits_fall_back_to_the_database_during_a_hang_exactly_once_each(
    kind: str, proxy: TcpProxy, own_redis: RedisServer
) -> None:
    credits = 100
    fault = Fault(kind, proxy, own_redis)
    try:
        async with service(proxy, credits_mode="redis") as svc, Stalls().watching() as stalls:
            key = await svc.key(credits={"remaining": credits})
            answers = await svc.burst(key["key"], 16)  # through Redis
            round_trips = svc.redis.round_trips
            began = time.monotonic()
            fault.begin()
            # The first IN_FLIGHT go out together and wait for the deadline; the rest spend in the database at once.
            answers += await svc.burst(key["key"], 24)
            while time.monotonic() - began < OUTAGE_S:
                answers += await svc.burst(key["key"], 2)
                await asyncio.sleep(0.1)  # the outage lasts real time
            ended = time.monotonic()
            round_trips = svc.redis.round_trips - round_trips
            fault.end()
            await svc.recovered()
            answers += await svc.burst(key["key"], 2 * credits)

            # Seen by the server: nothing was sent to the hung Redis after the first failure. Before it, the spends
            # of the first IN_FLIGHT went out in one write (made in the same turn of the loop), and perhaps a credits
            # write-back's call in another.
            assert round_trips <= 2, f"{round_trips} writes to a hung Redis: its calls were tried again"
            slow = [(round(a.started - began, 3), round(a.took, 3)) for a in waited(answers, began, ended, stalls)]
            assert len(slow) <= IN_FLIGHT, (
                f"{len(slow)} verifications waited on the hung Redis (when, for how long: {slow}; this process "
                f"did not run for {[(round(s - began, 3), round(e - s, 3)) for s, e in stalls.seen]}); "
                f"only the {IN_FLIGHT} under way when it hung may wait, once"
            )
            assert Counter(a.code for a in answers)["VALID"] == credits, "every credit spent once, none twice"
            spender = svc.ks.ctx.verifier.spender
            assert isinstance(spender, RedisSpender)
            assert spender.stats["database_credits"] > 0, "spent in the database while Redis hung"
            assert spender.writeback is not None
            await spender.writeback.flush()
            response = await svc.http.get(f"/v1/keys/{key['id']}", headers=svc.auth)
            assert response.json()["credits"]["remaining"] == 0
    finally:
        fault.end()


@pytest.mark.parametrize("kind", ["blackhole", "sigstop"])
async def test_the_change_subscription_notices_a_silent_redis_within_a_second_and_comes_back(
    kind: str, proxy: TcpProxy, own_redis: RedisServer
) -> None:
    fault = Fault(kind, proxy, own_redis)
    try:
        async with service(proxy) as svc:
            assert await svc.bus_connected()
            fault.begin()
            began = time.monotonic()
            while await svc.bus_connected():
                assert time.monotonic() - began < NOTICED_S, "the subscription to a silent Redis was not dropped"
                await asyncio.sleep(0.05)  # the bus notices in real time (a PING and its deadline)
            fault.end()
            back = time.monotonic()
            while not await svc.bus_connected():
                assert time.monotonic() - back < RECOVERY_S, "the subscription did not come back"
                await asyncio.sleep(0.05)  # polling for the subscription to another process
    finally:
        fault.end()
