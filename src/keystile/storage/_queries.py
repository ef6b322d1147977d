"""The SQL text that differs between the dialects, built once per storage, and what the aggregate modules share.

The dialects differ only in their DDL (migrations), the JSON aggregates below, row locks, how a list of values
is matched and how an audit entry is hashed as it is appended; every other statement is written once, with
PostgreSQL's ``$n`` placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keystile.storage._driver import Dialect
from keystile.storage._rows import API_COLUMNS, AUDIT_COLUMNS, IDENTITY_COLUMNS, KEY_COLUMNS

CHUNK = 500
"""Values matched by one statement at most (SQLite's limit on parameters is far above it)."""

# Rate limits of an owner as [[name, limit, duration_ms, auto_apply, row id], ...] ({owner} is the column and
# value that select them), and an API's roles as {name: [perms]}.
_AGGREGATES: dict[Dialect, tuple[str, str]] = {
    "sqlite": (
        """(SELECT json_group_array(json_array(r.name, r."limit", r.duration_ms, r.auto_apply, r.id))
              FROM ratelimits r WHERE r.{owner})""",
        """(SELECT json_group_object(ro.name, json(ro.permissions)) FROM roles ro WHERE ro.api_id = k.api_id)""",
    ),
    "postgresql": (
        """(SELECT coalesce(json_agg(json_build_array(r.name, r."limit", r.duration_ms, r.auto_apply, r.id)), '[]')
              FROM ratelimits r WHERE r.{owner})""",
        """(SELECT coalesce(json_object_agg(ro.name, ro.permissions), '{}') FROM roles ro
             WHERE ro.api_id = k.api_id)""",
    ),
}


# Appending an audit entry (SPEC A2, see keystile.storage._audit): $1-$8 its fields, $9 and $10 the canonical text
# before and after the digits of seq.
_VALUES = "$1, $2, $3, $4, $5, $6, $7, $8"
_TYPED_VALUES = "$1::text, $2::bigint, $3::text, $4::text, $5::text, $6::text, $7::text, $8::json"
# PostgreSQL: one statement. The UPDATE waits for the head's row lock (held by a writer until its commit), then
# works on the head as that writer left it: numbers the entry, hashes it there (the canonical text around the
# digits of seq comes as $9 and $10) and moves the head; the INSERT takes seq and hashes from it.
_APPEND_PG = f"""WITH head AS (
    UPDATE audit_head SET seq = seq + 1, prev_hash = hash,
        hash = encode(sha256(decode(hash, 'hex') || convert_to($9 || (seq + 1)::text || $10, 'UTF8')), 'hex')
    WHERE id = 1 RETURNING seq, prev_hash, hash)
INSERT INTO audit_log ({AUDIT_COLUMNS})
SELECT head.seq, {_TYPED_VALUES}, head.prev_hash, head.hash FROM head RETURNING seq, prev_hash, hash"""
# SQLite: BEGIN IMMEDIATE holds the write lock already; the entry follows the head it reads, hashed by the function
# the driver registers (audit_hash), and a trigger moves the head.
_APPEND_SQLITE = f"""INSERT INTO audit_log ({AUDIT_COLUMNS})
SELECT seq + 1, {_VALUES}, hash, audit_hash(hash, $9 || (seq + 1) || $10) FROM audit_head WHERE id = 1
RETURNING seq, prev_hash, hash"""


class Queries:
    """SQL text specialised for one dialect, built once."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        ratelimits_of, roles = _AGGREGATES[dialect]
        self.ratelimits_of = ratelimits_of
        ratelimits = ratelimits_of.format(owner="key_id = k.id")
        self.key_select = (
            f"SELECT {KEY_COLUMNS}, {ratelimits} AS rl FROM keys k LEFT JOIN credits c ON c.id = k.credit_id"
        )
        api_cols = ", ".join(f"a.{col.strip()} AS a_{col.strip()}" for col in API_COLUMNS.split(","))
        identity_ratelimits = ratelimits_of.format(owner="identity_id = i.id")
        self.verify_select = (
            f"SELECT {KEY_COLUMNS}, {ratelimits} AS rl, {roles} AS role_perms, {api_cols},"
            f" {IDENTITY_COLUMNS}, {identity_ratelimits} AS i_rl"
            " FROM keys k LEFT JOIN credits c ON c.id = k.credit_id JOIN apis a ON a.id = k.api_id"
            " LEFT JOIN identities i ON i.owner_id = k.owner_id LEFT JOIN credits ic ON ic.id = i.credit_id"
            # The key asked for, else the decoy (see SqlStorage.load_for_verify): the same joins either way.
            " WHERE k.id = COALESCE((SELECT id FROM keys WHERE digest = $1), $2)"
        )
        self.identity_select = (
            f"SELECT {IDENTITY_COLUMNS}, {identity_ratelimits} AS i_rl"
            " FROM identities i LEFT JOIN credits ic ON ic.id = i.credit_id WHERE i.owner_id = $1"
        )
        # Row locks on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds its one write lock.
        self.for_update = " FOR UPDATE OF k" if dialect == "postgresql" else ""
        self.identity_for_update = " FOR UPDATE OF i" if dialect == "postgresql" else ""
        self.append_audit = _APPEND_PG if dialect == "postgresql" else _APPEND_SQLITE

    def any_of(self, column: str, values: Sequence[Any], first: int) -> tuple[str, list[Any]]:
        """``column`` equal to one of ``values``, as SQL starting at placeholder ``$first``, and its args."""
        if self.dialect == "postgresql":
            return f"{column} = ANY(${first})", [list(values)]
        marks = ", ".join(f"${first + i}" for i in range(len(values)))
        return f"{column} IN ({marks})", list(values)
