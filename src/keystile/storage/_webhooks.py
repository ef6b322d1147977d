"""Outgoing webhooks (SPEC R5): endpoints, the outbox (messages and their deliveries), attempts, and the
scheduler's lease, watermarks and notices.

Signing secrets are stored sealed only (the service seals and opens them). A pending delivery's ``next_at`` is
both when it is due and its lease: :func:`lease_due` moves it past the time a post may take, so that another
deliverer (another server) skips it, and a deliverer killed meanwhile leaves it due again when the lease ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keystile.core.ids import new_id
from keystile.core.models import Key
from keystile.core.webhooks import Attempt, Delivery, Due, Endpoint, Message, SealedSecret
from keystile.storage._driver import Executor, Row
from keystile.storage._queries import Queries
from keystile.storage._rows import dump, key_from_row, load

_ENDPOINT_COLUMNS = (
    "id, url, description, events, api_ids, enabled, credits_low_percent, created_at, updated_at,"
    " data_key_id, nonce, ciphertext, prev_data_key_id, prev_nonce, prev_ciphertext, prev_until"
)
_DELIVERY_COLUMNS = (
    "d.id, d.endpoint_id, d.message_id, m.type, d.state, d.attempts, d.next_at, d.created_at, d.updated_at,"
    " d.last_status"
)
_ATTEMPT_COLUMNS = "id, delivery_id, at, status, latency_ms, excerpt, error"


def _endpoint(row: Row) -> Endpoint:
    previous = None
    if row["prev_nonce"] is not None:
        previous = SealedSecret(row["prev_data_key_id"], bytes(row["prev_nonce"]), bytes(row["prev_ciphertext"]))
    api_ids = load(row["api_ids"])
    return Endpoint(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        events=tuple(load(row["events"])),
        api_ids=None if api_ids is None else tuple(api_ids),
        enabled=bool(row["enabled"]),
        credits_low_percent=int(row["credits_low_percent"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        secret=SealedSecret(row["data_key_id"], bytes(row["nonce"]), bytes(row["ciphertext"])),
        previous_secret=previous,
        previous_until=row["prev_until"],
    )


def _endpoint_params(ep: Endpoint) -> tuple[Any, ...]:
    prev = ep.previous_secret
    return (
        ep.id,
        ep.url,
        ep.description,
        dump(list(ep.events)),
        None if ep.api_ids is None else dump(list(ep.api_ids)),
        ep.enabled,
        ep.credits_low_percent,
        ep.created_at,
        ep.updated_at,
        ep.secret.data_key_id,
        ep.secret.nonce,
        ep.secret.ciphertext,
        prev.data_key_id if prev else None,
        prev.nonce if prev else None,
        prev.ciphertext if prev else None,
        ep.previous_until if prev else None,
    )


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        message_id=row["message_id"],
        type=row["type"],
        state=row["state"],
        attempts=int(row["attempts"]),
        next_at=row["next_at"] if row["state"] == "pending" else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_status=row["last_status"],
    )


def _attempt(row: Row) -> Attempt:
    return Attempt(
        id=row["id"],
        delivery_id=row["delivery_id"],
        at=row["at"],
        status=row["status"],
        latency_ms=int(row["latency_ms"]),
        excerpt=row["excerpt"],
        error=row["error"],
    )


# -- endpoints -------------------------------------------------------------------------------------------------


async def insert_endpoint(tx: Executor, ep: Endpoint) -> None:
    marks = ", ".join(f"${i}" for i in range(1, 17))
    await tx.execute(f"INSERT INTO webhook_endpoints ({_ENDPOINT_COLUMNS}) VALUES ({marks})", *_endpoint_params(ep))


async def update_endpoint(tx: Executor, ep: Endpoint) -> None:
    await tx.execute(
        """UPDATE webhook_endpoints SET url = $2, description = $3, events = $4, api_ids = $5, enabled = $6,
                  credits_low_percent = $7, created_at = $8, updated_at = $9, data_key_id = $10, nonce = $11,
                  ciphertext = $12, prev_data_key_id = $13, prev_nonce = $14, prev_ciphertext = $15, prev_until = $16
            WHERE id = $1""",
        *_endpoint_params(ep),
    )


async def delete_endpoint(tx: Executor, endpoint_id: str) -> bool:
    return await tx.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id) > 0


async def get_endpoint(db: Executor, endpoint_id: str, lock: str = "") -> Endpoint | None:
    row = await db.fetchone(f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1{lock}", endpoint_id)
    return _endpoint(row) if row is not None else None


async def list_endpoints(db: Executor, *, after: str | None, limit: int, enabled_only: bool = False) -> list[Endpoint]:
    conditions, args = ["TRUE"], list[Any]()
    if after is not None:
        args.append(after)
        conditions.append(f"id < ${len(args)}")
    if enabled_only:
        conditions.append("enabled")
    args.append(limit)
    rows = await db.fetchall(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE {' AND '.join(conditions)}"
        f" ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    return [_endpoint(row) for row in rows]


# -- the outbox ------------------------------------------------------------------------------------------------


async def enqueue(tx: Executor, message: Message, endpoint_ids: Sequence[str]) -> None:
    """Write ``message`` and one pending delivery of it to each endpoint, due at once."""
    if not endpoint_ids:
        return
    await tx.execute(
        "INSERT INTO webhook_messages (id, type, api_id, order_key, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        message.id,
        message.type,
        message.api_id,
        message.order_key,
        message.body,
        message.created_at,
    )
    at = message.created_at
    await tx.executemany(
        """INSERT INTO webhook_deliveries (id, endpoint_id, message_id, order_key, state, attempts, next_at,
                                           created_at, updated_at)
           VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)""",
        [(new_id("dlv", at), endpoint_id, message.id, message.order_key, at) for endpoint_id in endpoint_ids],
    )


async def lease_due(tx: Executor, q: Queries, now: int, lease_until: int, limit: int) -> list[Due]:
    """Take up to ``limit`` due deliveries (each the earliest pending one of its key and endpoint), leased until
    ``lease_until``. PostgreSQL skips rows another deliverer is taking (``FOR UPDATE SKIP LOCKED``); SQLite's
    single writer takes them one transaction at a time."""
    lock = " FOR UPDATE SKIP LOCKED" if q.dialect == "postgresql" else ""
    rows = await tx.fetchall(
        f"""UPDATE webhook_deliveries SET next_at = $2 WHERE seq IN (
              SELECT d.seq FROM webhook_deliveries d
               WHERE d.state = 'pending' AND d.next_at <= $1
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                                  WHERE e.state = 'pending' AND e.endpoint_id = d.endpoint_id
                                    AND e.order_key = d.order_key AND e.seq < d.seq)
               ORDER BY d.next_at LIMIT $3{lock})
            RETURNING id""",
        now,
        lease_until,
        limit,
    )
    if not rows:
        return []
    where, args = q.any_of("d.id", [row["id"] for row in rows], 1)
    found = await tx.fetchall(
        f"""SELECT d.id, d.message_id, d.endpoint_id, d.attempts, m.created_at, m.body, e.url, e.data_key_id,
                   e.nonce, e.ciphertext, e.prev_data_key_id, e.prev_nonce, e.prev_ciphertext, e.prev_until
              FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
              JOIN webhook_endpoints e ON e.id = d.endpoint_id
             WHERE {where} ORDER BY d.seq""",
        *args,
    )
    due = []
    for row in found:
        previous = None
        if row["prev_nonce"] is not None:
            previous = SealedSecret(row["prev_data_key_id"], bytes(row["prev_nonce"]), bytes(row["prev_ciphertext"]))
        due.append(
            Due(
                delivery_id=row["id"],
                message_id=row["message_id"],
                endpoint_id=row["endpoint_id"],
                url=row["url"],
                body=bytes(row["body"]),
                attempts=int(row["attempts"]),
                created_at=row["created_at"],
                secret=SealedSecret(row["data_key_id"], bytes(row["nonce"]), bytes(row["ciphertext"])),
                previous_secret=previous,
                previous_until=row["prev_until"],
            )
        )
    return due


async def any_due(db: Executor, now: int) -> bool:
    row = await db.fetchone(
        "SELECT 1 AS due FROM webhook_deliveries WHERE state = 'pending' AND next_at <= $1 LIMIT 1", now
    )
    return row is not None


async def record_attempt(tx: Executor, attempt: Attempt, state: str, next_at: int | None) -> None:
    """Store an attempt and move its delivery on: ``delivered``, ``failed``, or ``pending`` until ``next_at``."""
    await tx.execute(
        f"INSERT INTO webhook_attempts ({_ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        attempt.id,
        attempt.delivery_id,
        attempt.at,
        attempt.status,
        attempt.latency_ms,
        attempt.excerpt,
        attempt.error,
    )
    await tx.execute(
        """UPDATE webhook_deliveries SET state = $2, next_at = $3, attempts = attempts + 1, last_status = $4,
                  updated_at = $5 WHERE id = $1""",
        attempt.delivery_id,
        state,
        next_at,
        attempt.status,
        attempt.at,
    )


async def retry_delivery(tx: Executor, endpoint_id: str, delivery_id: str, now: int) -> bool:
    """Make a delivered or failed delivery of the endpoint due again now; False when there is none."""
    changed = await tx.execute(
        """UPDATE webhook_deliveries SET state = 'pending', next_at = $3, updated_at = $3
            WHERE id = $1 AND endpoint_id = $2 AND state <> 'pending'""",
        delivery_id,
        endpoint_id,
        now,
    )
    if changed:
        return True
    # Pending already: it goes at its next attempt (moving that could post it twice while a deliverer holds it).
    row = await tx.fetchone(
        "SELECT 1 AS found FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2", delivery_id, endpoint_id
    )
    return row is not None


async def get_delivery(db: Executor, endpoint_id: str, delivery_id: str) -> Delivery | None:
    row = await db.fetchone(
        f"""SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
             WHERE d.id = $1 AND d.endpoint_id = $2""",
        delivery_id,
        endpoint_id,
    )
    return _delivery(row) if row is not None else None


async def list_deliveries(
    db: Executor, endpoint_id: str, *, after: str | None, limit: int, state: str | None = None
) -> list[Delivery]:
    conditions, args = ["d.endpoint_id = $1"], [endpoint_id]
    if after is not None:
        args.append(after)
        conditions.append(f"d.id < ${len(args)}")
    if state is not None:
        args.append(state)
        conditions.append(f"d.state = ${len(args)}")
    args.append(limit)  # type: ignore[arg-type]
    rows = await db.fetchall(
        f"""SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
             WHERE {" AND ".join(conditions)} ORDER BY d.id DESC LIMIT ${len(args)}""",
        *args,
    )
    return [_delivery(row) for row in rows]


async def list_attempts(db: Executor, q: Queries, delivery_ids: Sequence[str]) -> list[Attempt]:
    if not delivery_ids:
        return []
    where, args = q.any_of("delivery_id", list(delivery_ids), 1)
    rows = await db.fetchall(f"SELECT {_ATTEMPT_COLUMNS} FROM webhook_attempts WHERE {where} ORDER BY at, id", *args)
    return [_attempt(row) for row in rows]


async def prune(db: Executor, before: int) -> int:
    """Delete attempts older than ``before``, and messages (with their deliveries) older than that whose
    deliveries all ended; returns how many messages went."""
    await db.execute("DELETE FROM webhook_attempts WHERE at < $1", before)
    return await db.execute(
        """DELETE FROM webhook_messages WHERE created_at < $1 AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries d WHERE d.message_id = webhook_messages.id AND d.state = 'pending')""",
        before,
    )


# -- credits.low -----------------------------------------------------------------------------------------------


async def set_credit_base(tx: Executor, credit_id: str, amount: int) -> None:
    await tx.execute(
        """INSERT INTO webhook_credit_bases (credit_id, amount) VALUES ($1, $2)
           ON CONFLICT (credit_id) DO UPDATE SET amount = excluded.amount""",
        credit_id,
        amount,
    )


async def credit_base(db: Executor, credit_id: str) -> int | None:
    """A balance's refill amount, else the amount it was last set to (``None``: neither is known)."""
    row = await db.fetchone(
        """SELECT COALESCE(c.refill_amount, b.amount) AS base FROM credits c
             LEFT JOIN webhook_credit_bases b ON b.credit_id = c.id WHERE c.id = $1""",
        credit_id,
    )
    return None if row is None or row["base"] is None else int(row["base"])


# -- the scheduler ---------------------------------------------------------------------------------------------


async def take_lease(tx: Executor, owner: str, now: int, until: int) -> bool:
    """Hold the scheduler's lease until ``until`` when it is free, expired or already ``owner``'s."""
    changed = await tx.execute(
        "UPDATE webhook_schedule SET owner = $1, until = $3 WHERE name = 'lease' AND (until <= $2 OR owner = $1)",
        owner,
        now,
        until,
    )
    return changed > 0


async def watermark(tx: Executor, name: str) -> int | None:
    row = await tx.fetchone("SELECT watermark FROM webhook_schedule WHERE name = $1", name)
    return None if row is None else row["watermark"]


async def set_watermark(tx: Executor, name: str, value: int) -> None:
    if await tx.execute("UPDATE webhook_schedule SET watermark = $2 WHERE name = $1", name, value) == 0:
        await tx.execute("INSERT INTO webhook_schedule (name, watermark) VALUES ($1, $2)", name, value)


async def keys_expiring(tx: Executor, q: Queries, after: int, until: int, limit: int) -> list[Key]:
    """Unrevoked keys whose ``expires_at`` is in ``(after, until]``, soonest first (through ``keys_by_expiry``)."""
    rows = await tx.fetchall(
        f"""{q.key_select} WHERE k.expires_at > $1 AND k.expires_at <= $2 AND k.revoked_at IS NULL
             AND k.api_id <> 'api_root' ORDER BY k.expires_at, k.id LIMIT $3""",
        after,
        until,
        limit,
    )
    return [key_from_row(row) for row in rows]


async def keys_created(tx: Executor, q: Queries, api_id: str, after: int, until: int, limit: int) -> list[Key]:
    """Unrevoked keys of an API created in ``(after, until]``, oldest first (through ``keys_by_creation``)."""
    rows = await tx.fetchall(
        f"""{q.key_select} WHERE k.api_id = $1 AND k.created_at > $2 AND k.created_at <= $3
             AND k.revoked_at IS NULL ORDER BY k.created_at, k.id LIMIT $4""",
        api_id,
        after,
        until,
        limit,
    )
    return [key_from_row(row) for row in rows]


async def keys_written(tx: Executor, q: Queries, after: int, now: int, within_ms: int) -> list[Key]:
    """Unrevoked keys written in ``(after, now]`` that expire by ``now + within_ms`` (through ``keys_by_update``)."""
    rows = await tx.fetchall(
        f"""{q.key_select} WHERE k.updated_at > $1 AND k.updated_at <= $2 AND k.expires_at IS NOT NULL
             AND k.expires_at <= $3 AND k.revoked_at IS NULL AND k.api_id <> 'api_root' ORDER BY k.updated_at""",
        after,
        now,
        now + within_ms,
    )
    return [key_from_row(row) for row in rows]


async def claim_notice(tx: Executor, key_id: str, notice: str, at: int) -> bool:
    """Record that ``key_id`` was sent ``notice``; False when it was already (another server, an earlier scan)."""
    changed = await tx.execute(
        "INSERT INTO webhook_notices (key_id, notice, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        key_id,
        notice,
        at,
    )
    return changed > 0
