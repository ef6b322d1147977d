"""Contract: the webhooks' endpoints, outbox, leases and scheduler rows (SPEC R5), on every backend."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keystile.core.ids import new_id
from keystile.core.models import DataKey
from keystile.core.webhooks import Attempt, Endpoint, Message, SealedSecret
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.storage.conftest import Records


async def _endpoint(storage: SqlStorage, records: Records, **fields: Any) -> Endpoint:
    at = records.tick()
    async with storage.transaction() as tx:
        if await storage.get_data_key("dk_1") is None:
            await tx.insert_data_key(DataKey("dk_1", "mk_a", b"wrapped", at, at))
        endpoint = Endpoint(
            **{
                "id": new_id("whk", at),
                "url": "https://hooks.example.com/x",
                "events": ("key.created", "key.revoked"),
                "api_ids": None,
                "enabled": True,
                "description": "d",
                "created_at": at,
                "updated_at": at,
                "secret": SealedSecret("dk_1", b"n" * 12, b"sealed"),
                **fields,
            }
        )
        await tx.insert_webhook(endpoint)
    return endpoint


def _message(records: Records, order_key: str, event_type: str = "key.created") -> Message:
    at = records.tick()
    return Message(new_id("msg", at), event_type, "api_x", order_key, b'{"type":"' + event_type.encode() + b'"}', at)


async def test_an_endpoint_round_trips_and_updates(storage: SqlStorage, records: Records) -> None:
    endpoint = await _endpoint(storage, records, api_ids=("api_a",))
    assert await storage.get_webhook(endpoint.id) == endpoint
    rotated = replace(
        endpoint,
        secret=SealedSecret("dk_1", b"m" * 12, b"new"),
        previous_secret=endpoint.secret,
        previous_until=99,
        enabled=False,
    )
    async with storage.transaction() as tx:
        await tx.update_webhook(rotated)
        assert await tx.get_webhook(endpoint.id) == rotated
        assert await tx.webhook_targets() == []
    assert await storage.list_webhooks(after=None, limit=10) == [rotated]
    async with storage.transaction() as tx:
        assert await tx.delete_webhook(endpoint.id)
        assert not await tx.delete_webhook(endpoint.id)
    assert await storage.get_webhook(endpoint.id) is None


async def test_deliveries_of_one_key_are_leased_in_order_and_once(storage: SqlStorage, records: Records) -> None:
    endpoint = await _endpoint(storage, records)
    first, second, other = _message(records, "key_a"), _message(records, "key_a"), _message(records, "key_b")
    async with storage.transaction() as tx:
        for message in (first, second, other):
            await tx.enqueue_webhook(message, [endpoint.id])
        await tx.enqueue_webhook(_message(records, "key_c"), [])  # nobody wants it: nothing written
    assert len(await records.rows("webhook_messages")) == 3
    now = records.tick()

    async with storage.transaction() as tx:
        due = await tx.lease_webhook_deliveries(now, now + 1000, 10)
    assert sorted(d.message_id for d in due) == sorted([first.id, other.id])  # the second waits for the first
    assert due[0].body.startswith(b'{"type"')
    assert due[0].secret.ciphertext == b"sealed"
    async with storage.transaction() as tx:
        assert await tx.lease_webhook_deliveries(now, now + 1000, 10) == []  # leased

    by_message = {d.message_id: d for d in due}
    attempt = Attempt(new_id("att", now), by_message[first.id].delivery_id, now, 200, 5, "ok")
    async with storage.transaction() as tx:
        await tx.record_webhook_attempt(attempt, "delivered", None)
        [nxt] = await tx.lease_webhook_deliveries(now, now + 1000, 10)
    assert nxt.message_id == second.id

    # An expired lease makes a delivery due again (a deliverer that died mid-post).
    async with storage.transaction() as tx:
        again = await tx.lease_webhook_deliveries(now + 2000, now + 3000, 10)
    assert sorted(d.message_id for d in again) == sorted([second.id, other.id])

    deliveries = await storage.list_webhook_deliveries(endpoint.id, after=None, limit=10)
    assert [d.message_id for d in deliveries] == [other.id, second.id, first.id]
    delivered = [d for d in deliveries if d.state == "delivered"]
    assert [(d.message_id, d.attempts, d.last_status) for d in delivered] == [(first.id, 1, 200)]
    assert await storage.list_webhook_attempts([attempt.delivery_id]) == [attempt]


async def test_a_failed_delivery_can_be_retried(storage: SqlStorage, records: Records) -> None:
    endpoint = await _endpoint(storage, records)
    message = _message(records, "key_a")
    async with storage.transaction() as tx:
        await tx.enqueue_webhook(message, [endpoint.id])
        [due] = await tx.lease_webhook_deliveries(message.created_at, message.created_at + 10, 10)
        attempt = Attempt(new_id("att", message.created_at), due.delivery_id, message.created_at, 500, 3, "no")
        await tx.record_webhook_attempt(attempt, "failed", None)
    [failed] = await storage.list_webhook_deliveries(endpoint.id, after=None, limit=10, state="failed")
    async with storage.transaction() as tx:
        assert await tx.retry_webhook_delivery(endpoint.id, failed.id, 5)
        assert not await tx.retry_webhook_delivery(endpoint.id, "dlv_missing", 5)
        [again] = await tx.lease_webhook_deliveries(10, 20, 10)
    assert again.delivery_id == failed.id
    assert again.attempts == 1


async def test_pruning_keeps_what_is_pending(storage: SqlStorage, records: Records) -> None:
    endpoint = await _endpoint(storage, records)
    old, pending = _message(records, "key_a"), _message(records, "key_b")
    async with storage.transaction() as tx:
        await tx.enqueue_webhook(old, [endpoint.id])
        await tx.enqueue_webhook(pending, [endpoint.id])
        due = await tx.lease_webhook_deliveries(pending.created_at, pending.created_at + 1, 10)
        done = next(d for d in due if d.message_id == old.id)
        await tx.record_webhook_attempt(
            Attempt("att_1", done.delivery_id, old.created_at, 200, 1, ""), "delivered", None
        )
    assert await storage.prune_webhooks(pending.created_at + 10) == 1
    assert [row["id"] for row in await records.rows("webhook_messages")] == [pending.id]
    assert await records.rows("webhook_attempts") == []


async def test_the_schedule_lease_has_one_holder_at_a_time(storage: SqlStorage) -> None:
    async with storage.transaction() as tx:
        assert await tx.take_schedule_lease("a", 100, 200)
        assert await tx.take_schedule_lease("a", 150, 250)  # renewed by its holder
    async with storage.transaction() as tx:
        assert not await tx.take_schedule_lease("b", 200, 300)
        assert await tx.take_schedule_lease("b", 250, 350)  # expired
        assert await tx.schedule_watermark("w") is None
        await tx.set_schedule_watermark("w", 7)
        await tx.set_schedule_watermark("w", 8)
        assert await tx.schedule_watermark("w") == 8
        assert await tx.claim_notice("key_a", "expired:5", 1)
        assert not await tx.claim_notice("key_a", "expired:5", 2)


async def test_keys_are_found_by_expiry_creation_and_write_time(storage: SqlStorage, records: Records) -> None:
    api = await records.insert_api()
    soon = await records.insert_key(api.id, expires_at=1000)
    later = await records.insert_key(api.id, expires_at=5000)
    await records.insert_key(api.id, expires_at=1500, revoked_at=1)
    never = await records.insert_key(api.id)
    async with storage.transaction() as tx:
        assert [k.id for k in await tx.keys_expiring(0, 2000, 10)] == [soon.id]
        assert [k.id for k in await tx.keys_expiring(1000, 6000, 10)] == [later.id]
        created = await tx.keys_created(api.id, 0, never.created_at, 10)
        assert [k.id for k in created] == [soon.id, later.id, never.id]
        written = await tx.keys_written(0, never.created_at, 10_000)
        assert {k.id for k in written} == {soon.id, later.id}
