"""Verification events, Done when 1 (SPEC O1, O2, K4): real verifications through ``POST /v1/keys/verify``
for several keys and outcomes are found again, exactly and newest first, through every filter of ``GET /v1/logs``
page by page, and through ``keystile logs --json`` (the real command, in a process of its own, on the same
database).

The app runs in process on SQLite and on PostgreSQL; the manual clock moves a second between verifications, so
each event has a time of its own to filter on.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystile.core.clock import ManualClock
from keystile.core.timefmt import to_rfc3339
from keystile.service import Keystile
from tests.e2e.server import cli

from .helpers import Headers

Json = dict[str, Any]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
pytestmark = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)


@dataclass(frozen=True)
class Sent:
    """A verification as the test sent it and as its event must read back."""

    request_id: str
    ts: int
    outcome: str
    api_id: str
    key_id: str | None
    owner_id: str | None

    def matches(self, where: Json) -> bool:
        if where.get("since") is not None and self.ts < where["since"]:
            return False
        if where.get("until") is not None and self.ts >= where["until"]:
            return False
        return all(getattr(self, name) == value for name, value in where.items() if name not in ("since", "until"))


async def create_key(client: httpx.AsyncClient, auth: Headers, api_id: str, **body: Any) -> Json:
    response = await client.post(f"/v1/apis/{api_id}/keys", json=body, headers=auth)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


@pytest.fixture
async def sent(
    client: httpx.AsyncClient, auth: Headers, api: Json, other_api: Json, ks: Keystile, clock: ManualClock
) -> list[Sent]:
    """About 50 verifications of every outcome below, a second apart, then flushed to storage."""
    alice = await create_key(client, auth, api["id"], name="alice", owner_id="alice", permissions=["docs.read"])
    limit = {"name": "requests", "limit": 2, "duration_ms": 60_000}
    bob = await create_key(client, auth, api["id"], name="bob", owner_id="bob", ratelimits=[limit])
    gone = await create_key(client, auth, api["id"], name="gone", owner_id="alice")
    assert (await client.post(f"/v1/keys/{gone['id']}/revoke", headers=auth)).status_code == 200
    off = await create_key(client, auth, api["id"], name="off", enabled=False)
    carol = await create_key(client, auth, other_api["id"], name="carol", owner_id="carol")
    unknown = "ks_" + "Z" * 40
    plan: list[tuple[Json | None, Json]] = [
        (alice, {}),
        (alice, {"permissions": "docs.write"}),
        (bob, {}),
        (bob, {}),
        (bob, {}),
        (gone, {}),
        (off, {}),
        (carol, {}),
        (None, {"api_id": api["id"]}),
        (carol, {"api_id": api["id"]}),  # a key of another API: not found, and not revealed
    ]
    made: list[Sent] = []
    for round_ in range(5):
        for index, (key, extra) in enumerate(plan):
            request_id = f"req_{round_}_{index}"
            body = {"key": key["key"] if key else unknown, **extra}
            response = await client.post("/v1/keys/verify", json=body, headers={**auth, "X-Request-Id": request_id})
            assert response.status_code == 200, response.text
            outcome = response.json()["code"]
            found = key is not None and outcome != "NOT_FOUND"
            made.append(
                Sent(
                    request_id,
                    int(clock.now() * 1000),
                    outcome,
                    key["api_id"] if found and key else extra.get("api_id", ""),
                    key["id"] if found and key else None,
                    key.get("owner_id") if found and key else None,
                )
            )
            clock.advance(1)
        clock.advance(60)  # bob's limit fills up again
    await ks.events.flush()
    assert set(Counter(s.outcome for s in made)) == {
        "VALID", "INSUFFICIENT_PERMISSIONS", "RATE_LIMITED", "REVOKED", "DISABLED", "NOT_FOUND"
    }  # fmt: skip
    return made


def expected(sent: list[Sent], where: Json) -> list[str]:
    return [s.request_id for s in sorted(sent, key=lambda s: s.ts, reverse=True) if s.matches(where)]


def filters(sent: list[Sent]) -> list[Json]:
    by_request = {s.request_id: s for s in sent}
    alice, bob = by_request["req_0_0"], by_request["req_0_2"]
    middle = sorted(s.ts for s in sent)
    return [
        {},
        {"api_id": alice.api_id},
        {"api_id": by_request["req_0_7"].api_id},
        {"key_id": alice.key_id},
        {"key_id": bob.key_id, "outcome": "RATE_LIMITED"},
        {"owner_id": "alice"},
        {"outcome": "NOT_FOUND"},
        {"outcome": "REVOKED", "owner_id": "alice"},
        {"since": middle[10], "until": middle[30]},
        {"api_id": alice.api_id, "outcome": "VALID", "since": middle[5]},
    ]


async def test_every_filter_of_get_v1_logs_finds_exactly_the_verifications_sent(
    client: httpx.AsyncClient, auth: Headers, sent: list[Sent]
) -> None:
    for where in filters(sent):
        params = {name: to_rfc3339(value) if name in ("since", "until") else value for name, value in where.items()}
        params["limit"] = 4
        seen: list[Json] = []
        pages = 0
        while True:
            response = await client.get("/v1/logs", params=params, headers=auth)
            assert response.status_code == 200, response.text
            body = response.json()
            seen.extend(body["items"])
            pages += 1
            if body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
        assert [item["request_id"] for item in seen] == expected(sent, where), where
        assert pages >= len(seen) // 4
        by_request = {s.request_id: s for s in sent}
        for item in seen:
            s = by_request[item["request_id"]]
            assert (item["ts"], item["outcome"], item["api_id"], item["key_id"], item["owner_id"]) == (
                to_rfc3339(s.ts), s.outcome, s.api_id, s.key_id, s.owner_id
            )  # fmt: skip


async def test_the_last_use_of_each_key_shows_on_its_record(
    client: httpx.AsyncClient, auth: Headers, sent: list[Sent]
) -> None:
    last: dict[str, int] = {}
    for s in sent:
        if s.key_id is not None:
            last[s.key_id] = max(last.get(s.key_id, 0), s.ts)
    for key_id, ts in last.items():
        record = (await client.get(f"/v1/keys/{key_id}", headers=auth)).json()
        assert record["last_used_at"] == to_rfc3339(ts), record


async def test_keystile_logs_finds_the_same_verifications(sent: list[Sent], database_url: str, tmp_path: Path) -> None:
    env = {"KEYSTILE_DATABASE_URL": database_url, "KEYSTILE_DATA_DIR": str(tmp_path / "cli")}

    async def pages(where: Json) -> list[str]:
        flags: list[str] = []
        for name, value in where.items():
            flags += [f"--{name.replace('_', '-')}", str(to_rfc3339(value) if name in ("since", "until") else value)]
        seen: list[str] = []
        cursor: list[str] = []
        while True:
            out = await asyncio.to_thread(cli, "logs", *flags, "--limit", "20", "--json", *cursor,
                                          workdir=tmp_path, env=env)  # fmt: skip
            page = json.loads(out)
            seen.extend(item["request_id"] for item in page["items"])
            if page["next_cursor"] is None:
                return seen
            cursor = ["--cursor", page["next_cursor"]]

    wanted = filters(sent)
    found = await asyncio.gather(*(pages(where) for where in wanted))
    for where, seen in zip(wanted, found, strict=True):
        assert seen == expected(sent, where), where
