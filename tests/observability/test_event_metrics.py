"""``/metrics`` of verification events (SPEC O1, O4): the buffer, what the writer did, and the verifications it
counted by API and outcome with their latencies, read back with prometheus-client's parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from keystile.config import Settings
from keystile.core import keys as keyformat
from keystile.core.clock import ManualClock
from keystile.server import create_app
from keystile.service import Keystile
from keystile.storage import SqlStorage

from .conftest import Samples, bearer, scrape, value

Json = dict[str, Any]


async def verify(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> str:
    response = await client.post("/v1/keys/verify", json=body, headers=auth)
    assert response.status_code == 200, response.text
    code: str = response.json()["code"]
    return code


def verifications(found: Samples) -> dict[tuple[str, str], float]:
    """``keystile_verifications_total`` by ``(api_id, outcome)``."""
    return {
        (labels["api_id"], labels["outcome"]): sample
        for (name, pairs), sample in found.items()
        if name == "keystile_verifications_total" and (labels := dict(pairs))
    }


async def test_verifications_are_counted_by_api_and_outcome_with_their_latencies(
    client: httpx.AsyncClient, auth: dict[str, str], api: Json, key: Json
) -> None:
    assert await verify(client, auth, key=key["key"]) == "VALID"
    assert await verify(client, auth, key=key["key"]) == "VALID"
    assert await verify(client, auth, key=key["key"], permissions="docs.write") == "INSUFFICIENT_PERMISSIONS"
    # The request's api_id is caller input: it must not become a label (anyone could make new series).
    assert await verify(client, auth, key=keyformat.generate("ks"), api_id="api_made_up_by_a_caller") == "NOT_FOUND"

    found = await scrape(client)

    assert verifications(found) == {
        (api["id"], "VALID"): 2,
        (api["id"], "INSUFFICIENT_PERMISSIONS"): 1,
        ("", "NOT_FOUND"): 1,
    }
    assert value(found, "keystile_verification_duration_seconds_count") == 4
    assert value(found, "keystile_verification_duration_seconds_bucket", le="+Inf") == 4
    assert value(found, "keystile_verification_duration_seconds_sum") > 0  # latencies were measured and summed
    buckets = sorted(
        (float(dict(labels)["le"]), sample)
        for (name, labels), sample in found.items()
        if name == "keystile_verification_duration_seconds_bucket"
    )
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)  # cumulative


async def test_buffer_depth_and_writer_counters_follow_a_flush(
    client: httpx.AsyncClient, auth: dict[str, str], key: Json, ks: Keystile, clock: ManualClock
) -> None:
    for _ in range(3):
        assert await verify(client, auth, key=key["key"]) == "VALID"
    before = await scrape(client)
    assert value(before, "keystile_events_enabled") == 1
    assert value(before, "keystile_events_buffered") == 3
    assert value(before, "keystile_events_buffer_capacity") == 100_000
    assert value(before, "keystile_events_written_total") == 0
    assert value(before, "keystile_events_last_flush_timestamp_seconds") == 0

    clock.advance(12.5)
    assert await ks.events.flush() == 3

    after = await scrape(client)
    assert value(after, "keystile_events_buffered") == 0
    assert value(after, "keystile_events_written_total") == 3
    assert value(after, "keystile_events_batches_total") == 1
    assert value(after, "keystile_events_dropped_total") == 0
    assert value(after, "keystile_events_write_errors_total") == 0
    assert value(after, "keystile_events_last_flush_timestamp_seconds") == clock.now()
    # Counted once, whether before or after the write.
    assert value(after, "keystile_verification_duration_seconds_count") == 3


@pytest.fixture
async def small(storage: SqlStorage, clock: ManualClock) -> AsyncIterator[tuple[httpx.AsyncClient, Keystile]]:
    """An app whose event buffer holds 3 events."""
    settings = Settings(database_url="memory://", events_buffer=3)
    ks = Keystile.create(storage, settings, clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings, keystile=ks)), base_url="http://test"
    ) as client:
        yield client, ks


async def test_events_beyond_the_buffer_are_dropped_and_counted_not_counted_as_verifications(
    small: tuple[httpx.AsyncClient, Keystile],
) -> None:
    client, ks = small
    created = await ks.root_keys.bootstrap()
    assert created is not None
    auth = bearer(created[1])

    for _ in range(5):
        assert await verify(client, auth, key=keyformat.generate("ks")) == "NOT_FOUND"

    found = await scrape(client)
    assert value(found, "keystile_events_buffered") == 3
    assert value(found, "keystile_events_buffer_capacity") == 3
    assert value(found, "keystile_events_dropped_total") == 2
    assert verifications(found) == {("", "NOT_FOUND"): 3}
    await ks.events.flush()
    assert value(await scrape(client), "keystile_events_dropped_total") == 2


async def test_with_events_off_only_says_they_are_off(storage: SqlStorage, clock: ManualClock) -> None:
    settings = Settings(database_url="memory://", events=False)
    ks = Keystile.create(storage, settings, clock)
    created = await ks.root_keys.bootstrap()
    assert created is not None
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings, keystile=ks)), base_url="http://test"
    ) as client:
        assert await verify(client, bearer(created[1]), key=keyformat.generate("ks")) == "NOT_FOUND"
        found = await scrape(client)

    assert value(found, "keystile_events_enabled") == 0
    names = {name for name, _ in found}
    assert not {name for name in names if name.startswith(("keystile_events_", "keystile_verification"))} - {
        "keystile_events_enabled"
    }
