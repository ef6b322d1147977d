"""Webhooks from real ``keystile serve`` processes (SPEC R5, issue 12 Done when 1-3): a ``kill -9`` in the middle
of a burst of 1,000 events loses none once the server is back, and two servers on one PostgreSQL send each event
once (every delivery has exactly one attempt, the receiver one post per event). The receiver is a real HTTP
server that checks each signature with the ``standardwebhooks`` package."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.webhook_receiver import Receiver, receiver

from .server import Server, serve

pytestmark = [pytest.mark.e2e]

BURST = 1000
FAST = {
    "KEYSTILE_WEBHOOKS_ALLOW_PRIVATE": "true",  # the receiver listens on 127.0.0.1
    "KEYSTILE_WEBHOOKS_POLL_MS": "100",
    "KEYSTILE_WEBHOOKS_TIMEOUT_MS": "2000",
    "KEYSTILE_WEBHOOKS_RETRY_BASE_MS": "200",
}


def _call(server: Server, root: str, method: str, path: str, body: Any = None) -> Any:
    answer = httpx.request(
        method, f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {root}"}, timeout=60
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def _setup(server: Server, root: str, rx: Receiver) -> tuple[str, str]:
    """An endpoint for every event, posting to ``rx``; and an API. Returns their ids."""
    created = _call(server, root, "POST", "/v1/webhooks", {"url": rx.url, "events": ["key.created"]})
    rx.secrets.append(created["secret"])
    api = _call(server, root, "POST", "/v1/apis", {"name": "burst"})
    return created["id"], api["id"]


def _burst(server: Server, root: str, api_id: str, count: int) -> set[str]:
    """``count`` new keys in bulk requests of 1,000 at most; returns their ids."""
    ids: set[str] = set()
    while len(ids) < count:
        batch = min(1000, count - len(ids))
        done = _call(server, root, "POST", f"/v1/apis/{api_id}/keys/bulk", {"keys": [{}] * batch})
        ids |= {key["id"] for key in done["items"]}
    return ids


def _slowly(n: int) -> int:
    time.sleep(0.002)  # a receiver that takes its time, so that the kill lands mid-burst
    return 200


def test_a_kill_9_in_the_middle_of_a_burst_loses_no_event(tmp_path: Path) -> None:
    env = {**FAST, "KEYSTILE_DATA_DIR": str(tmp_path / "data")}
    with receiver(answer=_slowly) as rx:
        server = serve(tmp_path, env)
        try:
            root = server.root_key()
            _, api_id = _setup(server, root, rx)
            keys = _burst(server, root, api_id, BURST)
            deadline = time.monotonic() + 60
            while len(rx.unique()) < 50 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        finally:
            server.stop()
        seen_before = len(rx.unique())
        assert 0 < seen_before < BURST, "the kill came in the middle of the burst"

        again = serve(tmp_path, env, name="again")
        try:
            unique = rx.wait_for(BURST, timeout=120)
        finally:
            assert again.stop() == 0, again.output()
    assert {r.body["data"]["id"] for r in unique.values()} == keys
    assert all(r.verified for r in rx.received)
    assert "Traceback" not in again.stderr(), again.output()


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_send_each_event_once(tmp_path: Path, fresh_pg_url: str) -> None:
    shared = {**FAST, "KEYSTILE_DATABASE_URL": fresh_pg_url, "KEYSTILE_MASTER_KEY": secrets.token_bytes(32).hex()}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    count = 300
    with receiver() as rx:
        first = serve(tmp_path / "a", {**shared, "KEYSTILE_DATA_DIR": str(tmp_path / "a" / "data")}, name="a")
        try:
            second = serve(tmp_path / "b", {**shared, "KEYSTILE_DATA_DIR": str(tmp_path / "b" / "data")}, name="b")
            try:
                root = first.root_key()
                webhook_id, api_id = _setup(first, root, rx)
                keys = _burst(first, root, api_id, count)
                unique = rx.wait_for(count, timeout=60)
                time.sleep(1)  # a second post of any event would have arrived by now
                deliveries = _call(second, root, "GET", f"/v1/webhooks/{webhook_id}/deliveries?limit=1000")["items"]
            finally:
                assert second.stop() == 0, second.output()
        finally:
            assert first.stop() == 0, first.output()
    assert {r.body["data"]["id"] for r in unique.values()} == keys
    assert len(rx.received) == count  # no event was posted twice
    assert len(deliveries) == count
    failed = [d["attempt_log"] for d in deliveries if d["attempts"] != 1]
    assert failed == []
    assert {d["state"] for d in deliveries} == {"delivered"}
    assert all(r.verified for r in rx.received)
