"""Conversions between database rows and core records, shared by every SQL dialect."""

from __future__ import annotations

from typing import Any

import msgspec

from keystile.core.models import Api, AuditEntry, Credits, Identity, Key, RateLimit, Refill, Role
from keystile.storage._driver import Row

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.decode


def dump(value: Any) -> str:
    """JSON text for a JSON column (text on SQLite, jsonb or json on PostgreSQL)."""
    return _json_encode(value).decode()


def load(value: Any) -> Any:
    """A JSON column's value (asyncpg hands jsonb and json over as text, as sqlite3 does)."""
    return _json_decode(value) if isinstance(value, str | bytes) else value


def ratelimits_to_json(limits: tuple[RateLimit, ...]) -> str:
    return dump([[rl.name, rl.limit, rl.duration_ms, rl.auto_apply] for rl in limits])


def ratelimits_from_json(value: Any) -> tuple[RateLimit, ...]:
    """Rate limits from an API's JSON column, or from a key's aggregated rows (which carry their row id as a
    fifth element, to be put back in the order they were given: SQL aggregates promise no order)."""
    items = load(value)
    if items and len(items[0]) == 5:
        items = sorted(items, key=lambda item: ratelimit_position(item[4]))
    return tuple(RateLimit(item[0], item[1], item[2], bool(item[3])) for item in items)


def ratelimit_row_id(owner_id: str, position: int) -> str:
    """The id of a rate-limit row: its owner (a key or an identity) and its position in the owner's list."""
    return f"rl_{owner_id}.{position}"


def ratelimit_position(row_id: str) -> int:
    tail = row_id.rpartition(".")[2]
    return int(tail) if tail.isdigit() else -1


def api_from_row(row: Row, p: str = "") -> Api:
    """An API from a row whose API columns carry the name prefix ``p`` (``a_`` when joined to keys)."""
    return Api(
        id=row[p + "id"],
        name=row[p + "name"],
        prefix=row[p + "prefix"],
        created_at=row[p + "created_at"],
        updated_at=row[p + "updated_at"],
        default_ratelimits=ratelimits_from_json(row[p + "default_ratelimits"]),
        max_key_age_days=row[p + "max_key_age_days"],
        recoverable=bool(row[p + "recoverable"]),
        ip_allowlist=tuple(load(row[p + "ip_allowlist"])),
        expire_stale_after_days=row[p + "expire_stale_after_days"],
    )


def api_params(api: Api) -> tuple[Any, ...]:
    """Parameters in the order of :data:`API_COLUMNS`."""
    return (
        api.id,
        api.name,
        api.prefix,
        api.created_at,
        api.updated_at,
        ratelimits_to_json(api.default_ratelimits),
        api.max_key_age_days,
        api.recoverable,
        dump(list(api.ip_allowlist)),
        api.expire_stale_after_days,
    )


API_COLUMNS = (
    "id, name, prefix, created_at, updated_at, default_ratelimits, max_key_age_days, recoverable, ip_allowlist,"
    " expire_stale_after_days"
)

# A balance's columns (c_*), FROM credits c.
CREDIT_COLUMNS = """c.remaining AS c_remaining, c.refill_amount AS c_refill_amount,
       c.refill_interval AS c_refill_interval, c.refill_day AS c_refill_day, c.refilled_at AS c_refilled_at"""

# Key columns, then its credits (c_*) and its rate limits as one JSON array (rl); FROM keys k, credits c.
KEY_COLUMNS = f"""k.id, k.api_id, k.digest, k.start, k.name, k.owner_id, k.meta, k.permissions, k.roles,
       k.created_at, k.updated_at, k.expires_at, k.enabled, k.revoked_at, k.last_used_at, k.ip_allowlist,
       k.rotated_from, k.rotated_to, k.credit_id,
       {CREDIT_COLUMNS}"""


def credits_from_row(row: Row, link: str = "credit_id", p: str = "c_") -> Credits | None:
    """The balance a row links to through its column ``link``, from credit columns prefixed ``p``."""
    if row[link] is None:
        return None
    refill = None
    if row[p + "refill_interval"] is not None:
        refill = Refill(row[p + "refill_amount"], row[p + "refill_interval"], row[p + "refill_day"])
    return Credits(row[link], row[p + "remaining"], refill, row[p + "refilled_at"])


# An owner's identity joined to a key (i_*), with its credits (ic_*) and rate limits (i_rl).
IDENTITY_COLUMNS = """i.id AS i_id, i.owner_id AS i_owner_id, i.meta AS i_meta, i.created_at AS i_created_at,
       i.updated_at AS i_updated_at, i.credit_id AS i_credit_id,
       ic.remaining AS ic_remaining, ic.refill_amount AS ic_refill_amount, ic.refill_interval AS ic_refill_interval,
       ic.refill_day AS ic_refill_day, ic.refilled_at AS ic_refilled_at"""


def identity_from_row(row: Row, p: str = "i_") -> Identity | None:
    """An identity from columns prefixed ``p`` (as :data:`IDENTITY_COLUMNS` names them), if the row has one."""
    if row[p + "id"] is None:
        return None
    return Identity(
        id=row[p + "id"],
        owner_id=row[p + "owner_id"],
        created_at=row[p + "created_at"],
        updated_at=row[p + "updated_at"],
        meta=load(row[p + "meta"]),
        credits=credits_from_row(row, p + "credit_id", "ic_"),
        ratelimits=ratelimits_from_json(row[p + "rl"]),
    )


def key_from_row(row: Row) -> Key:
    return Key(
        id=row["id"],
        api_id=row["api_id"],
        digest=bytes(row["digest"]),
        start=row["start"],
        name=row["name"],
        owner_id=row["owner_id"],
        meta=load(row["meta"]),
        permissions=tuple(load(row["permissions"])),
        roles=tuple(load(row["roles"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        enabled=bool(row["enabled"]),
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        credits=credits_from_row(row),
        ratelimits=ratelimits_from_json(row["rl"]),
        ip_allowlist=tuple(load(row["ip_allowlist"])),
        rotated_from=row["rotated_from"],
        rotated_to=row["rotated_to"],
    )


def role_from_row(row: Row) -> Role:
    return Role(
        api_id=row["api_id"],
        name=row["name"],
        permissions=tuple(load(row["permissions"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


AUDIT_COLUMNS = "seq, id, ts, actor, action, target, ip, user_agent, changes, prev_hash, hash"


def audit_from_row(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        ts=row["ts"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        ip=row["ip"],
        user_agent=row["user_agent"],
        changes=load(row["changes"]),
        seq=row["seq"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
