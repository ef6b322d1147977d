"""The ports the core and the services need from the outside world: storage and change notification.

Every storage backend implements :class:`Storage` (async for every backend, so that a network database is
awaited and never blocks the event loop). Writes happen inside :meth:`Storage.transaction`, whose
:class:`Transaction` sees its own writes and commits them, audit entries included, all at once or not at all.
Backends translate their drivers' errors into :class:`keystile.errors.StorageError` and
:class:`keystile.errors.Conflict`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from keystile.core.models import (
    Api,
    AuditEntry,
    AuditFilter,
    Credits,
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
)
from keystile.core.ratelimit import Bucket, LimitState
from keystile.core.webhooks import Attempt, Delivery, Due, Endpoint, Message


class Transaction(Protocol):
    """One atomic unit of writes. Methods raise ``Conflict`` on a uniqueness clash."""

    async def get_api(self, api_id: str) -> Api | None: ...
    async def insert_api(self, api: Api) -> None: ...
    async def update_api(self, api: Api) -> None: ...
    async def delete_api(self, api_id: str) -> list[bytes]:
        """Delete an API with its keys and roles; returns the digests of the keys that went with it."""
        ...

    async def get_key(self, key_id: str) -> Key | None:
        """The key, locked against concurrent writers until the transaction ends."""
        ...

    async def insert_keys(self, keys: Sequence[Key]) -> None:
        """Insert keys (with their credits and rate limits); a duplicate digest raises ``Conflict`` whose
        ``extra["index"]`` is the position of the first clashing key in ``keys``."""
        ...

    async def update_key(self, key: Key) -> None:
        """Replace every mutable field of a key (credits and rate limits included) with ``key``'s."""
        ...

    async def find_digests(self, digests: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        """Which of ``digests`` belong to a key already, in any API: ``{digest: (key id, api id)}``."""
        ...

    async def import_keys(self, keys: Sequence[Key]) -> None:
        """Insert keys (with their credits and rate limits) whose digests :meth:`find_digests` found free, in as
        few round trips as the database allows; a digest taken meanwhile raises ``Conflict``."""
        ...

    async def mark_imported_by_digest(self, api_id: str) -> bool:
        """Record that keys were imported into the API by digest (SPEC K2); returns whether that is new."""
        ...

    async def delete_key(self, key_id: str) -> bool: ...
    async def reroll_key(self, old: Key, new: Key) -> None:
        """Write a reroll (SPEC R2): ``old``'s expiry, ``rotated_to`` and ``updated_at``, and the new key, which
        links to the balance of ``new.credits`` as it exists (the old key's: credits move, they are not copied)."""
        ...

    async def adjust_credits(self, credit_id: str, op: str, amount: int, at_ms: int) -> int | None:
        """``set``, ``add`` or ``subtract`` credits in one atomic statement (subtracting stops at 0, adding at
        2**53); the balance after, or ``None`` when it does not exist."""
        ...

    async def drop_credits(self, credit_id: str, at_ms: int) -> list[bytes]:
        """Make every key linked to a balance unlimited and delete the balance; returns those keys' digests."""
        ...

    async def credit_holders(self, credit_id: str) -> list[bytes]:
        """The digests of the keys linked to a balance (a rerolled pair shares one)."""
        ...

    async def get_identity(self, owner_id: str) -> Identity | None:
        """The identity of an owner, locked against concurrent writers until the transaction ends."""
        ...

    async def insert_identity(self, identity: Identity) -> None:
        """Insert an identity with its balance and rate limits; an existing ``owner_id`` raises ``Conflict``."""
        ...

    async def update_identity(self, identity: Identity) -> None:
        """Replace an identity's meta, balance and rate limits with ``identity``'s."""
        ...

    async def delete_identity(self, owner_id: str) -> bool: ...
    async def get_role(self, api_id: str, name: str) -> Role | None: ...
    async def put_role(self, role: Role) -> None: ...
    async def delete_role(self, api_id: str, name: str) -> list[bytes]:
        """Delete a role and take it off every key that lists it; returns those keys' digests."""
        ...

    async def append_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an entry after the last one committed; returns it with its ``seq``, ``prev_hash`` and ``hash``
        (SPEC A2). Concurrent transactions that append queue until this one ends."""
        ...

    async def insert_key_secrets(self, secrets: Sequence[KeySecret]) -> None:
        """Store recoverable keys' sealed plain text (SPEC K3); each key must exist. Deleting a key deletes it."""
        ...

    async def insert_data_key(self, data_key: DataKey) -> None: ...
    async def data_keys_to_rewrap(self, master_id: str, *, after: str, limit: int) -> list[DataKey]:
        """Data keys not wrapped under ``master_id``, by id after ``after``, at most ``limit`` (a rotation's batch)."""
        ...

    async def rewrap_data_key(self, data_key_id: str, old_master_id: str, new: DataKey) -> bool:
        """Replace a data key's wrapping with ``new``'s, if it is still wrapped under ``old_master_id``."""
        ...

    async def insert_signing_key(self, key: SigningKey) -> None:
        """Store a new token signing key (SPEC T2)."""
        ...

    async def retire_signing_keys(self, *, at: int, not_after: int, keep: str) -> list[str]:
        """Mark every signing key still signing, other than ``keep``, retired at ``at`` and published until
        ``not_after``; delete those whose ``not_after`` has passed at ``at``. Returns the kids retired."""
        ...

    # -- outgoing webhooks (SPEC R5) ------------------------------------------------------------------------

    async def get_webhook(self, endpoint_id: str) -> Endpoint | None:
        """A webhook endpoint, locked against concurrent writers until the transaction ends."""
        ...

    async def insert_webhook(self, endpoint: Endpoint) -> None: ...
    async def update_webhook(self, endpoint: Endpoint) -> None: ...
    async def delete_webhook(self, endpoint_id: str) -> bool:
        """Delete an endpoint with its deliveries."""
        ...

    async def webhook_targets(self) -> list[Endpoint]:
        """The enabled endpoints (an event's delivery goes to those that want it)."""
        ...

    async def enqueue_webhook(self, message: Message, endpoint_ids: Sequence[str]) -> None:
        """Write an event to the outbox, with a pending delivery to each endpoint (none: nothing is written)."""
        ...

    async def lease_webhook_deliveries(self, now: int, lease_until: int, limit: int) -> list[Due]:
        """Take due deliveries (each the earliest pending of its key and endpoint) until ``lease_until``; another
        deliverer (another server) never takes the same ones while the lease lasts."""
        ...

    async def record_webhook_attempt(self, attempt: Attempt, state: str, next_at: int | None) -> None: ...
    async def retry_webhook_delivery(self, endpoint_id: str, delivery_id: str, now: int) -> bool:
        """Make a delivery due again now; False when the endpoint has no such delivery."""
        ...

    async def take_schedule_lease(self, owner: str, now: int, until: int) -> bool:
        """Hold the scheduler's lease until ``until`` when it is free, expired or ``owner``'s already."""
        ...

    async def schedule_watermark(self, name: str) -> int | None: ...
    async def set_schedule_watermark(self, name: str, value: int) -> None: ...
    async def keys_expiring(self, after: int, until: int, limit: int) -> list[Key]:
        """Unrevoked keys expiring in ``(after, until]``, soonest first (an index on the expiry)."""
        ...

    async def keys_created(self, api_id: str, after: int, until: int, limit: int) -> list[Key]:
        """Unrevoked keys of an API created in ``(after, until]``, oldest first (an index on the creation)."""
        ...

    async def set_credit_base(self, credit_id: str, amount: int) -> None:
        """Record the amount a balance was set to (``credits.low`` is a percentage of it)."""
        ...

    async def keys_written(self, after: int, now: int, within_ms: int) -> list[Key]:
        """Unrevoked keys written (``updated_at``) in ``(after, now]`` that expire by ``now + within_ms``."""
        ...

    async def claim_notice(self, key_id: str, notice: str, at: int) -> bool:
        """Record that a key was sent a time-driven notice; False when it was already."""
        ...


class Storage(Protocol):
    """Where Keystile keeps its records (SPEC X2)."""

    async def migrate(self) -> list[int]:
        """Create or upgrade the schema; returns the versions applied now (empty when up to date)."""
        ...

    async def pending_migrations(self) -> list[int]: ...
    async def ping(self) -> None:
        """Raise ``StorageError`` unless the database answers."""
        ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def load_for_verify(self, digest: bytes) -> KeyBundle | None:
        """Everything verification needs about the key with this digest, in as few round trips as possible."""
        ...

    async def digest_import_prefixes(self) -> frozenset[str]:
        """The prefixes of the APIs into which keys were imported by digest: strings in Keystile's shape with
        such a prefix are looked up even when their checksum fails (SPEC K2)."""
        ...

    async def get_api(self, api_id: str) -> Api | None: ...
    async def list_apis(self, *, after: str | None, limit: int, only: frozenset[str] | None) -> list[Api]:
        """APIs newest first, after the cursor id ``after``; ``only`` restricts to those ids."""
        ...

    async def get_key(self, key_id: str) -> Key | None: ...
    async def get_identity(self, owner_id: str) -> Identity | None: ...
    async def list_identities(
        self, *, after: str | None, limit: int, search: str | None = None, identity_id: str | None = None
    ) -> list[Identity]:
        """Identities newest first, after the cursor id ``after``; ``search`` keeps owner ids starting with it,
        ``identity_id`` only the identity of that id."""
        ...

    async def list_keys(self, api_id: str, where: KeyFilter, *, at_ms: int, after: str | None, limit: int) -> list[Key]:
        """Keys of an API newest first; ``at_ms`` is "now" for the ``expired`` filter."""
        ...

    async def spend_credits(
        self, credit_id: str, cost: int, now_ms: int, refill: tuple[int, int] | None
    ) -> tuple[bool, int] | None:
        """Take ``cost`` credits atomically if at least that many remain: ``(spent, remaining after)``, or
        ``None`` when the balance does not exist. ``refill`` is ``(amount, moment)``: when the balance was last
        filled before ``moment``, it is first topped up to ``amount`` (SPEC L3's lazy refill)."""
        ...

    async def credit_state(self, credit_id: str) -> tuple[int, int | None] | None:
        """A balance's ``(remaining, refilled_at)`` as the database has it now, or ``None`` when it does not exist
        (a Redis credit counter is loaded from it)."""
        ...

    async def write_back_credits(self, deltas: Sequence[CreditDelta]) -> None:
        """Apply credits spent elsewhere (in Redis) to their balances, in one transaction (see
        :class:`CreditDelta`); a balance that no longer exists is skipped."""
        ...

    async def list_roles(self, api_id: str) -> list[Role]: ...
    async def get_key_secret(self, key_id: str) -> KeySecret | None:
        """A recoverable key's sealed plain text, or ``None`` for a key that was not stored recoverable."""
        ...

    async def get_data_key(self, data_key_id: str) -> DataKey | None: ...
    async def count_data_keys(self) -> dict[str, int]:
        """How many data keys each master key (by id) wraps."""
        ...

    async def newest_data_key(self, master_id: str) -> DataKey | None:
        """The data key most recently made among those wrapped under ``master_id``."""
        ...

    async def list_signing_keys(self) -> list[SigningKey]:
        """Every stored token signing key (SPEC T2), oldest first."""
        ...

    async def put_web_session(self, session: WebSession) -> None:
        """Store a browser session or sign-in link (SPEC D1, D2)."""
        ...

    async def get_web_session(self, digest: bytes, *, at_ms: int) -> WebSession | None:
        """The session with this digest, unless it expired before ``at_ms``."""
        ...

    async def take_web_session(self, digest: bytes, *, at_ms: int) -> WebSession | None:
        """Delete the session (a one-time link) with this digest and return it, unless it expired before ``at_ms``:
        of two takers, one gets it."""
        ...

    async def touch_web_session(self, digest: bytes, *, seen_at: int, expires_at: int) -> None: ...
    async def drop_web_sessions(self, *, digest: bytes | None = None, expired_at: int | None = None) -> int:
        """Delete the session with ``digest``, or every session that expired before ``expired_at``; returns how
        many."""
        ...

    async def count_keys(self, api_id: str) -> int: ...

    async def get_webhook(self, endpoint_id: str) -> Endpoint | None: ...
    async def list_webhooks(self, *, after: str | None, limit: int) -> list[Endpoint]:
        """Webhook endpoints newest first, after the cursor id ``after``."""
        ...

    async def get_webhook_delivery(self, endpoint_id: str, delivery_id: str) -> Delivery | None: ...
    async def list_webhook_deliveries(
        self, endpoint_id: str, *, after: str | None, limit: int, state: str | None = None
    ) -> list[Delivery]:
        """An endpoint's deliveries newest first, after the cursor id ``after``."""
        ...

    async def list_webhook_attempts(self, delivery_ids: Sequence[str]) -> list[Attempt]:
        """The attempts of these deliveries, oldest first."""
        ...

    async def webhooks_due(self, now: int) -> bool:
        """Whether some pending webhook delivery is due (a read, before leasing in a transaction)."""
        ...

    async def credit_base(self, credit_id: str) -> int | None:
        """A balance's refill amount, else the amount it was last set to; ``None`` when neither is known."""
        ...

    async def prune_webhooks(self, before: int) -> int:
        """Delete attempts older than ``before`` and ended messages older than that; returns messages deleted."""
        ...

    async def list_audit(self, where: AuditFilter, *, before: int | None, limit: int) -> list[AuditEntry]:
        """Audit entries newest first, with ``seq`` below the cursor ``before``."""
        ...

    async def audit_chain(self, *, from_seq: int, limit: int) -> list[AuditEntry]:
        """Audit entries with ``seq`` from ``from_seq`` on, oldest first, as stored (hashes included)."""
        ...

    async def audit_entry(self, seq: int) -> AuditEntry | None:
        """The audit entry ``seq``, if there is one."""
        ...

    async def audit_head(self) -> tuple[int, str]:
        """The ``(seq, hash)`` the next audit entry will follow: ``(0, 64 zeros)`` before the first."""
        ...

    async def list_events(
        self, where: EventFilter, *, before: str | None, limit: int, only: frozenset[str] | None = None
    ) -> list[VerificationEvent]:
        """Verification events newest first (by id), with ids below the cursor ``before``; ``only`` restricts
        to events of those APIs (a scoped root key's)."""
        ...

    async def count_rollups(
        self,
        granularity: Granularity,
        group_by: GroupBy,
        where: EventFilter,
        *,
        only: frozenset[str] | None = None,
        limit: int,
    ) -> list[RollupCount]:
        """Event counts per bucket of ``granularity`` and per group, from the rollups alone (never raw events):
        buckets in ``[where.since, where.until)``, oldest first, at most ``limit`` counts."""
        ...

    async def write_events(self, events: Sequence[VerificationEvent]) -> None:
        """Write one batch of events in one transaction: the events, their counts added to the minute, hour and
        day rollups, and each key's ``last_used_at`` moved forward to its newest event (SPEC O1, O3, K4).

        Raises StorageError (nothing written), and Conflict when an event id is already stored (the batch was
        written before: a commit whose acknowledgement was lost)."""
        ...

    async def write_event_rows(self, rows: Sequence[EventRow]) -> None:
        """:meth:`write_events` for events already made into rows (the event writer's batches)."""
        ...

    async def prune_events(self, raw_before_ms: int, rollups_before_ms: int) -> Pruned:
        """Remove raw events older than ``raw_before_ms`` (on PostgreSQL: the day partitions that end by then)
        and hour and day rollups older than ``rollups_before_ms``; minute rollups go with the raw events. Safe to
        run from several processes at once. Raises StorageError."""
        ...


Granularity = Literal["minute", "hour", "day"]
GroupBy = Literal["outcome", "key", "owner"]


@dataclass(frozen=True, slots=True)
class RollupCount:
    """How many events fell in the bucket starting at ``bucket`` (epoch ms) for one group: an outcome, a key
    id or an owner id (``None`` for events without a key or owner)."""

    bucket: int
    group: str | None
    count: int


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention pass removed: raw events deleted (SQLite), day partitions dropped (PostgreSQL) and
    rollup rows deleted. ``skipped``: another process was pruning at the same moment."""

    events: int = 0
    partitions: tuple[str, ...] = ()
    rollups: int = 0
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class CreditDelta:
    """Credits spent from a balance outside the database, to write back (SPEC L3, ``credits_mode=redis``).

    ``spent`` belongs to the refill period that began at ``epoch`` (the balance's ``refilled_at``): the database
    subtracts it unless it has refilled since. ``refill``, when set, is the amount of a refill to ``epoch`` that
    came before those spends and that the database applies first if it has not refilled that far yet.
    """

    credit_id: str
    spent: int
    epoch: int | None
    refill: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """Something that cached verification state depends on has changed.

    ``kind`` ``"key"``: ``ref`` is the hex digest of one key. ``kind`` ``"api"``: ``ref`` is an API id and every
    cached key of that API is dropped (its allowlist or roles changed). ``kind`` ``"owner"``: ``ref`` is an
    ``owner_id`` whose identity changed, and every cached key of that owner is dropped. ``kind`` ``"all"``:
    anything may have changed (a subscriber that may have missed messages, a change too big to send): every cached
    key is asked of storage again before it is trusted, and served as it was only while storage is unreachable.
    ``kind`` ``"lost"``: this process's notification channel is down, so changes made elsewhere no longer reach
    it; as ``all``, and entries live the short fallback TTL until the next ``all`` (never sent over the wire).
    ``kind`` ``"credits"``: ``ref`` is the id of a balance written other than by spending (set, add, subtract, a
    patch): a copy kept elsewhere (a Redis credit counter) must be reloaded; cached keys are dropped by their own
    ``"key"`` changes.
    """

    kind: Literal["key", "api", "owner", "all", "lost", "credits"]
    ref: str = ""


ChangeListener = Callable[[Sequence[Change]], None]


@dataclass(frozen=True, slots=True)
class Spend:
    """What one verification spends: a request's cost against each applied rate limit, and ``cost`` credits
    from ``credits`` (``None``: unlimited)."""

    buckets: tuple[Bucket, ...]
    credits: Credits | None
    cost: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What spending decided: ``VALID``, ``RATE_LIMITED`` or ``USAGE_EXCEEDED``, with the limits' states and
    the credits left (``None``: unlimited)."""

    code: str
    ratelimits: tuple[LimitState, ...]
    remaining: int | None


class Spender(Protocol):
    """Spends rate-limit capacity and credits all-or-nothing (SPEC L1-L3): a refused request spends nothing."""

    def spend_now(self, spend: Spend, now_ms: float) -> Outcome | None:
        """Decide without waiting (in-process limits, no credits), or ``None`` when :meth:`spend` must be awaited.
        Returning ``None`` spends nothing."""
        ...

    async def spend(self, spend: Spend, now_ms: float) -> Outcome: ...


class ChangeBus(Protocol):
    """Carries changes to every verification cache: in this process at once, and with a notifying bus
    (``keystile.notify``: Redis pub/sub, PostgreSQL LISTEN/NOTIFY) to every other process too."""

    notifying: bool
    """Whether changes reach other processes (then caches may keep entries longer, SPEC V6)."""

    async def publish(self, changes: Sequence[Change]) -> None: ...
    def subscribe(self, listener: ChangeListener) -> None: ...
    async def close(self) -> None: ...


class LocalChangeBus:
    """Delivers changes to the listeners of this process only (the default without Redis or PostgreSQL)."""

    notifying = False

    def __init__(self) -> None:
        self._listeners: list[ChangeListener] = []

    async def publish(self, changes: Sequence[Change]) -> None:
        for listener in self._listeners:
            listener(changes)

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    async def close(self) -> None:
        self._listeners.clear()
