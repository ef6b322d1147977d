"""The storage of SPEC X2 written once in SQL, over any :class:`~keystile.storage._driver.Driver`.

The two dialects differ only in their DDL (migrations) and in the few statements of ``_queries``; everything else
is shared, so one contract suite covers both. This module wires the storage and its transactions together; the
statements live with their aggregate:

=====================  ==================================================================================
``_keys``              keys, their writes and the management API's reads
``_credits``           balance operations: set/add/subtract, spends (grouped on SQLite), Redis write-back
``_owned``             what keys and identities both own: a balance link and rate-limit rows
``_apis``              APIs and their roles
``_identities``        identities
``_audit``             the audit log
``_event_writes``      verification events, rollups, retention (and ``_event_reads`` for reading them)
=====================  ==================================================================================

Each of them is plain functions over an :class:`~keystile.storage._driver.Executor` (a driver, or a driver's
transaction): which connection a statement runs on is the caller's choice, so one function serves a read
inside a transaction and outside, and a function that shares a helper with another aggregate (a balance is
written for keys and for identities alike) imports it rather than inheriting it. The classes below only name
the protocol's methods (:class:`keystile.core.ports.Storage` and ``Transaction``) and hold the state: the
driver, the dialect's SQL, the decoy of verification and SQLite's group commit. The verification reads
(:meth:`SqlStorage.load_for_verify`, :meth:`SqlStorage.spend_credits`) are written out here rather than
delegated: they run per request, and a delegation would cost each one more coroutine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from keystile.core.clock import Clock, now_ms
from keystile.core.models import (
    Api,
    AuditEntry,
    AuditFilter,
    DataKey,
    EventFilter,
    EventRow,
    Identity,
    Key,
    KeyBundle,
    KeyFilter,
    KeySecret,
    Role,
    SigningKey,
    VerificationEvent,
    WebSession,
    event_row,
)
from keystile.core.ports import CreditDelta, Granularity, GroupBy, Pruned, RollupCount
from keystile.core.webhooks import Attempt, Delivery, Due, Endpoint, Message
from keystile.storage import (
    _apis,
    _audit,
    _credits,
    _event_reads,
    _identities,
    _keys,
    _migrate,
    _secrets,
    _webhooks,
    _websessions,
)
from keystile.storage._credits import GroupCommit, spend_statements
from keystile.storage._driver import Dialect, Driver, Executor
from keystile.storage._event_writes import EventWrites
from keystile.storage._queries import Queries
from keystile.storage._rows import api_from_row, identity_from_row, key_from_row, load


class SqlTransaction:
    """:class:`keystile.core.ports.Transaction` over a driver's transaction."""

    def __init__(self, tx: Executor, queries: Queries) -> None:
        self._tx = tx
        self._q = queries

    async def get_api(self, api_id: str) -> Api | None:
        return await _apis.get_api(self._tx, api_id)

    async def insert_api(self, api: Api) -> None:
        await _apis.insert_api(self._tx, api)

    async def update_api(self, api: Api) -> None:
        await _apis.update_api(self._tx, api)

    async def delete_api(self, api_id: str) -> list[bytes]:
        return await _apis.delete_api(self._tx, self._q, api_id)

    async def get_key(self, key_id: str) -> Key | None:
        return await _keys.get_key_for_update(self._tx, self._q, key_id)

    async def insert_keys(self, keys: Sequence[Key]) -> None:
        await _keys.insert_keys(self._tx, self._q, keys)

    async def update_key(self, key: Key) -> None:
        await _keys.update_key(self._tx, self._q, key)

    async def find_digests(self, digests: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        return await _keys.find_digests(self._tx, self._q, digests)

    async def import_keys(self, keys: Sequence[Key]) -> None:
        await _keys.import_keys(self._tx, keys)

    async def mark_imported_by_digest(self, api_id: str) -> bool:
        return await _apis.mark_imported_by_digest(self._tx, api_id)

    async def delete_key(self, key_id: str) -> bool:
        return await _keys.delete_key(self._tx, self._q, key_id)

    # -- rerolls and credit operations (SPEC R2, L3) -----------------------------------------------------------

    async def reroll_key(self, old: Key, new: Key) -> None:
        await _keys.reroll_key(self._tx, self._q, old, new)

    async def adjust_credits(self, credit_id: str, op: str, amount: int, at_ms: int) -> int | None:
        return await _credits.adjust_credits(self._tx, credit_id, op, amount, at_ms)

    async def drop_credits(self, credit_id: str, at_ms: int) -> list[bytes]:
        return await _credits.drop_credits(self._tx, self._q, credit_id, at_ms)

    async def credit_holders(self, credit_id: str) -> list[bytes]:
        return await _credits.credit_holders(self._tx, credit_id)

    # -- identities (SPEC K5) -------------------------------------------------------------------------------

    async def get_identity(self, owner_id: str) -> Identity | None:
        return await _identities.get_identity_for_update(self._tx, self._q, owner_id)

    async def insert_identity(self, identity: Identity) -> None:
        await _identities.insert_identity(self._tx, identity)

    async def update_identity(self, identity: Identity) -> None:
        await _identities.update_identity(self._tx, self._q, identity)

    async def delete_identity(self, owner_id: str) -> bool:
        return await _identities.delete_identity(self._tx, self._q, owner_id)

    # -- roles and audit ------------------------------------------------------------------------------------

    async def get_role(self, api_id: str, name: str) -> Role | None:
        return await _apis.get_role(self._tx, api_id, name)

    async def put_role(self, role: Role) -> None:
        await _apis.put_role(self._tx, role)

    async def delete_role(self, api_id: str, name: str) -> list[bytes]:
        return await _apis.delete_role(self._tx, api_id, name)

    async def append_audit(self, entry: AuditEntry) -> AuditEntry:
        return await _audit.append_audit(self._tx, self._q, entry)

    # -- recoverable keys (SPEC K3) -------------------------------------------------------------------------

    async def insert_key_secrets(self, secrets: Sequence[KeySecret]) -> None:
        await _secrets.insert_key_secrets(self._tx, secrets)

    async def insert_data_key(self, data_key: DataKey) -> None:
        await _secrets.insert_data_key(self._tx, data_key)

    async def data_keys_to_rewrap(self, master_id: str, *, after: str, limit: int) -> list[DataKey]:
        return await _secrets.data_keys_to_rewrap(self._tx, master_id, after=after, limit=limit)

    async def rewrap_data_key(self, data_key_id: str, old_master_id: str, new: DataKey) -> bool:
        return await _secrets.rewrap_data_key(self._tx, data_key_id, old_master_id, new)

    # -- token signing keys (SPEC T2) -----------------------------------------------------------------------

    async def insert_signing_key(self, key: SigningKey) -> None:
        await _secrets.insert_signing_key(self._tx, key)

    async def retire_signing_keys(self, *, at: int, not_after: int, keep: str) -> list[str]:
        return await _secrets.retire_signing_keys(self._tx, at=at, not_after=not_after, keep=keep)

    # -- outgoing webhooks (SPEC R5) ------------------------------------------------------------------------

    async def get_webhook(self, endpoint_id: str) -> Endpoint | None:
        lock = " FOR UPDATE" if self._q.dialect == "postgresql" else ""
        return await _webhooks.get_endpoint(self._tx, endpoint_id, lock)

    async def insert_webhook(self, endpoint: Endpoint) -> None:
        await _webhooks.insert_endpoint(self._tx, endpoint)

    async def update_webhook(self, endpoint: Endpoint) -> None:
        await _webhooks.update_endpoint(self._tx, endpoint)

    async def delete_webhook(self, endpoint_id: str) -> bool:
        return await _webhooks.delete_endpoint(self._tx, endpoint_id)

    async def webhook_targets(self) -> list[Endpoint]:
        return await _webhooks.list_endpoints(self._tx, after=None, limit=10_000, enabled_only=True)

    async def enqueue_webhook(self, message: Message, endpoint_ids: Sequence[str]) -> None:
        await _webhooks.enqueue(self._tx, message, endpoint_ids)

    async def lease_webhook_deliveries(self, now: int, lease_until: int, limit: int) -> list[Due]:
        return await _webhooks.lease_due(self._tx, self._q, now, lease_until, limit)

    async def record_webhook_attempt(self, attempt: Attempt, state: str, next_at: int | None) -> None:
        await _webhooks.record_attempt(self._tx, attempt, state, next_at)

    async def retry_webhook_delivery(self, endpoint_id: str, delivery_id: str, now: int) -> bool:
        return await _webhooks.retry_delivery(self._tx, endpoint_id, delivery_id, now)

    async def take_schedule_lease(self, owner: str, now: int, until: int) -> bool:
        return await _webhooks.take_lease(self._tx, owner, now, until)

    async def schedule_watermark(self, name: str) -> int | None:
        return await _webhooks.watermark(self._tx, name)

    async def set_schedule_watermark(self, name: str, value: int) -> None:
        await _webhooks.set_watermark(self._tx, name, value)

    async def keys_expiring(self, after: int, until: int, limit: int) -> list[Key]:
        return await _webhooks.keys_expiring(self._tx, self._q, after, until, limit)

    async def keys_created(self, api_id: str, after: int, until: int, limit: int) -> list[Key]:
        return await _webhooks.keys_created(self._tx, self._q, api_id, after, until, limit)

    async def set_credit_base(self, credit_id: str, amount: int) -> None:
        await _webhooks.set_credit_base(self._tx, credit_id, amount)

    async def keys_written(self, after: int, now: int, within_ms: int) -> list[Key]:
        return await _webhooks.keys_written(self._tx, self._q, after, now, within_ms)

    async def claim_notice(self, key_id: str, notice: str, at: int) -> bool:
        return await _webhooks.claim_notice(self._tx, key_id, notice, at)


class SqlStorage:
    """:class:`keystile.core.ports.Storage` over a SQL driver."""

    def __init__(self, driver: Driver, clock: Clock) -> None:
        self.driver = driver
        self._clock = clock
        self._q = Queries(driver.dialect)
        # PostgreSQL runs concurrent spends on several pooled connections; SQLite has one writer, so spends share
        # its trips instead.
        self._credit_group = GroupCommit(driver) if driver.dialect == "sqlite" else None
        self._event_writes = EventWrites(driver)
        # A real key, the last one loaded for a verification, that a lookup of an unknown digest loads instead.
        self._decoy_id = ""

    @property
    def dialect(self) -> Dialect:
        return self.driver.dialect

    async def migrate(self) -> list[int]:
        return await _migrate.migrate(self.driver, now_ms(self._clock))

    async def pending_migrations(self) -> list[int]:
        return [m.version for m in await _migrate.pending(self.driver)]

    async def ping(self) -> None:
        await self.driver.fetchone("SELECT 1")

    async def close(self) -> None:
        await self.driver.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self.driver.transaction() as tx:
            yield SqlTransaction(tx, self._q)

    # -- verification (per request) -----------------------------------------------------------------------------

    async def load_for_verify(self, digest: bytes) -> KeyBundle | None:
        # Look up, then decide (SPEC S2): a digest no key has loads a decoy, a real key, through the same joins
        # and the same decoding, so that the first probe of a key that exists (revoked, or another API's) takes as
        # long as that of one that does not.
        row = await self.driver.fetchone(self._q.verify_select, digest, self._decoy_id)
        if row is None:
            return None  # no decoy yet (nothing loaded since start), or it was deleted since
        roles = {name: tuple(perms) for name, perms in (load(row["role_perms"]) or {}).items()}
        bundle = KeyBundle(key_from_row(row), api_from_row(row, "a_"), roles, identity_from_row(row))
        if bundle.key.digest != digest:
            return None
        self._decoy_id = bundle.key.id
        return bundle

    async def digest_import_prefixes(self) -> frozenset[str]:
        return await _apis.digest_import_prefixes(self.driver)

    async def spend_credits(
        self, credit_id: str, cost: int, now_ms: int, refill: tuple[int, int] | None
    ) -> tuple[bool, int] | None:
        # One conditional UPDATE, so the check and the decrement are atomic on both databases (a row lock on
        # PostgreSQL, the single writer on SQLite): with N credits, exactly N concurrent requests of cost 1 succeed.
        spend, read = spend_statements(credit_id, cost, now_ms, refill)
        if self._credit_group is not None:
            row, current = await self._credit_group.run(spend, read)
        else:
            async with self.driver.transaction() as tx:
                row = await tx.fetchone(spend[0], *spend[1])
                current = None if row is not None else await tx.fetchone(read[0], *read[1])
        if row is not None:
            return True, int(row["remaining"])
        return (False, int(current["remaining"])) if current is not None else None

    async def credit_state(self, credit_id: str) -> tuple[int, int | None] | None:
        return await _credits.credit_state(self.driver, credit_id)

    async def write_back_credits(self, deltas: Sequence[CreditDelta]) -> None:
        await _credits.write_back_credits(self.driver, deltas, now_ms(self._clock))

    # -- the management API's reads -----------------------------------------------------------------------------

    async def get_api(self, api_id: str) -> Api | None:
        return await _apis.get_api(self.driver, api_id)

    async def list_apis(self, *, after: str | None, limit: int, only: frozenset[str] | None) -> list[Api]:
        return await _apis.list_apis(self.driver, self._q, after=after, limit=limit, only=only)

    async def get_key(self, key_id: str) -> Key | None:
        return await _keys.get_key(self.driver, self._q, key_id)

    async def get_identity(self, owner_id: str) -> Identity | None:
        return await _identities.get_identity(self.driver, self._q, owner_id)

    async def list_identities(
        self, *, after: str | None, limit: int, search: str | None = None, identity_id: str | None = None
    ) -> list[Identity]:
        return await _identities.list_identities(
            self.driver, self._q, after=after, limit=limit, search=search, identity_id=identity_id
        )

    async def list_keys(self, api_id: str, where: KeyFilter, *, at_ms: int, after: str | None, limit: int) -> list[Key]:
        return await _keys.list_keys(self.driver, self._q, api_id, where, at_ms=at_ms, after=after, limit=limit)

    async def count_keys(self, api_id: str) -> int:
        return await _keys.count_keys(self.driver, api_id)

    async def list_roles(self, api_id: str) -> list[Role]:
        return await _apis.list_roles(self.driver, api_id)

    async def list_audit(self, where: AuditFilter, *, before: int | None, limit: int) -> list[AuditEntry]:
        return await _audit.list_audit(self.driver, where, before=before, limit=limit)

    async def get_key_secret(self, key_id: str) -> KeySecret | None:
        return await _secrets.get_key_secret(self.driver, key_id)

    async def get_data_key(self, data_key_id: str) -> DataKey | None:
        return await _secrets.get_data_key(self.driver, data_key_id)

    async def count_data_keys(self) -> dict[str, int]:
        return await _secrets.count_data_keys(self.driver)

    async def newest_data_key(self, master_id: str) -> DataKey | None:
        return await _secrets.newest_data_key(self.driver, master_id)

    async def list_signing_keys(self) -> list[SigningKey]:
        return await _secrets.list_signing_keys(self.driver)

    # -- browser sessions and portal links (SPEC D1, D2) ----------------------------------------------------------

    async def put_web_session(self, session: WebSession) -> None:
        async with self.driver.transaction() as tx:
            await _websessions.put(tx, session)

    async def get_web_session(self, digest: bytes, *, at_ms: int) -> WebSession | None:
        return await _websessions.get(self.driver, digest, at_ms)

    async def take_web_session(self, digest: bytes, *, at_ms: int) -> WebSession | None:
        async with self.driver.transaction() as tx:
            return await _websessions.take(tx, digest, at_ms)

    async def touch_web_session(self, digest: bytes, *, seen_at: int, expires_at: int) -> None:
        async with self.driver.transaction() as tx:
            await _websessions.touch(tx, digest, seen_at, expires_at)

    async def drop_web_sessions(self, *, digest: bytes | None = None, expired_at: int | None = None) -> int:
        async with self.driver.transaction() as tx:
            return await _websessions.drop(tx, digest, expired_at)

    async def audit_chain(self, *, from_seq: int, limit: int) -> list[AuditEntry]:
        return await _audit.audit_chain(self.driver, from_seq=from_seq, limit=limit)

    async def audit_entry(self, seq: int) -> AuditEntry | None:
        return await _audit.audit_entry(self.driver, seq)

    async def audit_head(self) -> tuple[int, str]:
        return await _audit.audit_head(self.driver)

    # -- outgoing webhooks (SPEC R5) --------------------------------------------------------------------------

    async def get_webhook(self, endpoint_id: str) -> Endpoint | None:
        return await _webhooks.get_endpoint(self.driver, endpoint_id)

    async def list_webhooks(self, *, after: str | None, limit: int) -> list[Endpoint]:
        return await _webhooks.list_endpoints(self.driver, after=after, limit=limit)

    async def get_webhook_delivery(self, endpoint_id: str, delivery_id: str) -> Delivery | None:
        return await _webhooks.get_delivery(self.driver, endpoint_id, delivery_id)

    async def list_webhook_deliveries(
        self, endpoint_id: str, *, after: str | None, limit: int, state: str | None = None
    ) -> list[Delivery]:
        return await _webhooks.list_deliveries(self.driver, endpoint_id, after=after, limit=limit, state=state)

    async def list_webhook_attempts(self, delivery_ids: Sequence[str]) -> list[Attempt]:
        return await _webhooks.list_attempts(self.driver, self._q, delivery_ids)

    async def webhooks_due(self, now: int) -> bool:
        return await _webhooks.any_due(self.driver, now)

    async def credit_base(self, credit_id: str) -> int | None:
        return await _webhooks.credit_base(self.driver, credit_id)

    async def prune_webhooks(self, before: int) -> int:
        async with self.driver.transaction() as tx:
            return await _webhooks.prune(tx, before)

    # -- verification events (SPEC O1-O3) -----------------------------------------------------------------------

    async def list_events(
        self, where: EventFilter, *, before: str | None, limit: int, only: frozenset[str] | None = None
    ) -> list[VerificationEvent]:
        return await _event_reads.list_events(self.driver, where, before=before, limit=limit, only=only)

    async def count_rollups(
        self,
        granularity: Granularity,
        group_by: GroupBy,
        where: EventFilter,
        *,
        only: frozenset[str] | None = None,
        limit: int,
    ) -> list[RollupCount]:
        return await _event_reads.count_rollups(self.driver, granularity, group_by, where, only=only, limit=limit)

    async def write_events(self, events: Sequence[VerificationEvent]) -> None:
        await self._event_writes.write([event_row(event) for event in events])

    async def write_event_rows(self, rows: Sequence[EventRow]) -> None:
        await self._event_writes.write(rows)

    async def prune_events(self, raw_before_ms: int, rollups_before_ms: int) -> Pruned:
        return await self._event_writes.prune(raw_before_ms, rollups_before_ms)

    async def event_partitions(self) -> list[str]:
        """The day partitions of the events table, oldest first (PostgreSQL; empty on SQLite)."""
        return await self._event_writes.partitions()
