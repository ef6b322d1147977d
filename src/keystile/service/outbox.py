"""The webhooks' outbox (SPEC R5): events written in the transaction of the change they report.

:func:`emit` is called by the services beside their audit entry, inside the same transaction: the event exists
if and only if the change was committed, and a crash after the commit loses nothing (the deliverer finds the
rows). It writes nothing when no enabled endpoint wants the event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from keystile.core.ids import new_id
from keystile.core.models import ROOT_API_ID, Key
from keystile.core.ports import Transaction
from keystile.core.webhooks import Endpoint, Message
from keystile.service.snapshots import key_snapshot, time_text

_encode = msgspec.json.Encoder().encode


def key_record(key: Key) -> dict[str, Any]:
    """A key as an event shows it: its record as the API shows it, never the key nor its digest."""
    return {
        "id": key.id,
        "api_id": key.api_id,
        "start": key.start,
        **key_snapshot(key),
        "created_at": time_text(key.created_at),
        "updated_at": time_text(key.updated_at),
        "revoked_at": time_text(key.revoked_at),
        "last_used_at": time_text(key.last_used_at),
        "rotated_from": key.rotated_from,
        "rotated_to": key.rotated_to,
    }


def event_body(event_type: str, at_ms: int, data: dict[str, Any]) -> bytes:
    """The JSON body of an event: ``{type, timestamp, data}``."""
    return _encode({"type": event_type, "timestamp": time_text(at_ms), "data": data})


async def emit(
    tx: Transaction,
    event_type: str,
    key: Key,
    at_ms: int,
    extra: dict[str, Any] | None = None,
    *,
    only: Callable[[Endpoint], bool] | None = None,
) -> str | None:
    """Write the event ``event_type`` about ``key`` to the outbox of every enabled endpoint that wants it (root
    keys have none); returns the message id, or ``None`` when nobody wants it. ``extra`` joins the key record in
    ``data``; ``only`` narrows the endpoints further."""
    if key.api_id == ROOT_API_ID:
        return None
    targets = [
        ep.id for ep in await tx.webhook_targets() if ep.wants(event_type, key.api_id) and (only is None or only(ep))
    ]
    if not targets:
        return None
    body = event_body(event_type, at_ms, {**key_record(key), **(extra or {})})
    message = Message(new_id("msg", at_ms), event_type, key.api_id, key.id, body, at_ms)
    await tx.enqueue_webhook(message, targets)
    return message.id
