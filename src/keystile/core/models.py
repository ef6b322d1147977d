"""The records Keystile keeps (SPEC K1, K4, K5, V3, A1). Times are integer milliseconds since the epoch.

Records are immutable values: a change is a new record written through a storage transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
RefillInterval = Literal["daily", "monthly"]
ROOT_API_ID = "api_root"
"""The reserved internal API that holds root keys (SPEC K6); it is never listed or shown as an API."""
MAX_AUDIT_CURSOR_DIGITS = 18
"""An audit cursor is an entry's ``seq``: 18 digits stay below 2**63, the largest integer both databases hold."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A named limit: ``limit`` requests of cost 1 per ``duration_ms`` (SPEC L1)."""

    name: str
    limit: int
    duration_ms: int
    auto_apply: bool = True


@dataclass(frozen=True, slots=True)
class Refill:
    """Credits refilled to ``amount`` every day, or every month on ``day`` (1-31, clamped to the month)."""

    amount: int
    interval: RefillInterval
    day: int | None = None


@dataclass(frozen=True, slots=True)
class Credits:
    """A balance of its own that keys point to (SPEC K5): a key's, an identity's, or a rerolled pair's."""

    id: str
    remaining: int
    refill: Refill | None = None
    refilled_at: int | None = None


@dataclass(frozen=True, slots=True)
class Api:
    """A keyspace (SPEC K1)."""

    id: str
    name: str
    prefix: str
    created_at: int
    updated_at: int
    default_ratelimits: tuple[RateLimit, ...] = ()
    max_key_age_days: int | None = None
    recoverable: bool = False
    ip_allowlist: tuple[str, ...] = ()
    expire_stale_after_days: int | None = None
    """With ``max_key_age_days``: keys this many days past their maximum age verify as ``EXPIRED`` (SPEC R3)."""

    def stale_expiry(self, created_at: int) -> int | None:
        """When a key created at ``created_at`` expires under the rotation policy, if it does."""
        if self.max_key_age_days is None or self.expire_stale_after_days is None:
            return None
        return created_at + (self.max_key_age_days + self.expire_stale_after_days) * 86_400_000


@dataclass(frozen=True, slots=True)
class Identity:
    """One customer of the deployment (SPEC K5): its rate limits and credits are shared by all its keys,
    across APIs. Keys belong to it through their ``owner_id``."""

    id: str
    owner_id: str
    created_at: int
    updated_at: int
    meta: dict[str, Any] = field(default_factory=dict)
    credits: Credits | None = None
    ratelimits: tuple[RateLimit, ...] = ()


@dataclass(frozen=True, slots=True)
class Key:
    """A key record (SPEC K4). Holds the SHA-256 ``digest`` of the key, never the key."""

    id: str
    api_id: str
    digest: bytes
    start: str
    created_at: int
    updated_at: int
    name: str | None = None
    owner_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    permissions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    expires_at: int | None = None
    enabled: bool = True
    revoked_at: int | None = None
    last_used_at: int | None = None
    credits: Credits | None = None
    ratelimits: tuple[RateLimit, ...] = ()
    ip_allowlist: tuple[str, ...] = ()
    rotated_from: str | None = None
    rotated_to: str | None = None

    def is_expired(self, at_ms: int) -> bool:
        return self.expires_at is not None and at_ms >= self.expires_at


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key with what depends on its API and on the time: ``stale``, older than its API's ``max_key_age_days``
    (SPEC R3)."""

    key: Key
    stale: bool


ImportStatus = Literal["imported", "skipped"]


@dataclass(frozen=True, slots=True)
class ImportItem:
    """What became of one entry of an import (SPEC R4): the key it made, or the key of this API that already had
    its digest (``skipped``)."""

    index: int
    id: str
    status: ImportStatus


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The outcome of one batch of an import: counts, and one item per entry in order."""

    imported: int
    skipped: int
    items: tuple[ImportItem, ...]
    by_digest: int = 0
    """Entries given as digests rather than plain text (imported or skipped)."""


@dataclass(frozen=True, slots=True)
class Role:
    """A named permission set of one API (SPEC V3)."""

    api_id: str
    name: str
    permissions: tuple[str, ...]
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class DataKey:
    """A data key of recoverable keys (SPEC K3), as stored: 256 random bits ``wrapped`` (AES-256-GCM, nonce first)
    under the master key whose id is ``master_id``. Never the data key itself."""

    id: str
    master_id: str
    wrapped: bytes
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class KeySecret:
    """A recoverable key's plain text sealed (AES-256-GCM) under the data key ``data_key_id`` (SPEC K3)."""

    key_id: str
    data_key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class WebSession:
    """A browser session of the dashboard or the portal, or a portal sign-in link (SPEC D1, D2), kept by the
    SHA-256 of its id; ``subject`` names a root key by id, or a portal grant, never a key."""

    digest: bytes
    kind: str
    subject: str
    csrf: str
    created_at: int
    seen_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 key that signs API tokens (SPEC T2), as stored: the public key in the clear (32 bytes), the
    private key sealed (AES-256-GCM, ``nonce`` and ``ciphertext``) under the data key ``data_key_id``.

    ``retired_at``: when a newer key took over signing (``None`` while it signs); ``not_after``: when the last
    token it signed has expired, and its public key leaves the JWKS (``None`` while it signs)."""

    kid: str
    created_at: int
    public_key: bytes
    data_key_id: str
    nonce: bytes
    ciphertext: bytes
    retired_at: int | None = None
    not_after: int | None = None

    def published(self, at_ms: int) -> bool:
        """Whether its public key is still in the JWKS (tokens it signed may still be unexpired)."""
        return self.not_after is None or at_ms < self.not_after


@dataclass(frozen=True, slots=True)
class KeyBundle:
    """What verification needs on a cache miss: the key, its API, the permissions of its API's roles and the
    identity of its owner, if one exists."""

    key: Key
    api: Api
    role_permissions: dict[str, tuple[str, ...]]
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One management action (SPEC A1). Storage gives ``seq`` (in commit order), ``prev_hash`` and ``hash`` (the
    hash chain of SPEC A2, see :mod:`keystile.core.auditchain`)."""

    id: str
    ts: int
    actor: str
    action: str
    target: str
    ip: str | None = None
    user_agent: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def canonical(self) -> bytes:
        """The one canonical serialisation of an entry, which the hash chain covers (``prev_hash`` and ``hash``
        are not part of it).

        UTF-8 JSON with sorted keys and no whitespace; times stay integers, so no formatting choice can change
        the bytes.
        """
        before, after = self.canonical_around_seq()
        return f"{before}{json.dumps(self.seq)}{after}".encode()

    def canonical_around_seq(self) -> tuple[str, str]:
        """The canonical text before and after the digits of ``seq`` (which sorts between ``ip`` and ``target``),
        for a writer that learns ``seq`` only inside the database (PostgreSQL hashes there, see ``storage._audit``).
        """
        first = {"action": self.action, "actor": self.actor, "changes": self.changes, "id": self.id, "ip": self.ip}
        rest = {"target": self.target, "ts": self.ts, "user_agent": self.user_agent}
        return f'{_compact(first)[:-1]},"seq":', f",{_compact(rest)[1:]}"


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class VerificationEvent:
    """One verification (SPEC O1). ``api_id`` is the key's API, else the one the request named; ``key_id`` and
    ``owner_id`` are ``None`` when the key was not found. Never holds the key."""

    id: str
    ts: int
    outcome: str
    latency_us: int
    request_id: str | None = None
    api_id: str | None = None
    key_id: str | None = None
    owner_id: str | None = None
    ip: str | None = None
    tags: tuple[str, ...] = ()


EventRow = tuple[str, int, str | None, str | None, str | None, str | None, str, str | None, str, int]
"""A :class:`VerificationEvent` as storage writes it: ``(id, ts, request_id, api_id, key_id, owner_id, outcome,
ip, tags as JSON text, latency_us)``. The event writer makes these straight from what a verification recorded
(an object per event on the way cost more than the rest of its preparation)."""


def event_row(event: VerificationEvent) -> EventRow:
    """``event`` as an :data:`EventRow`."""
    tags = json.dumps(list(event.tags), ensure_ascii=False, separators=(",", ":")) if event.tags else "[]"
    return (
        event.id, event.ts, event.request_id, event.api_id, event.key_id, event.owner_id, event.outcome, event.ip,
        tags, event.latency_us,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters of the verification log (SPEC O2); ``since`` inclusive, ``until`` exclusive (epoch ms)."""

    api_id: str | None = None
    key_id: str | None = None
    owner_id: str | None = None
    outcome: str | None = None
    since: int | None = None
    until: int | None = None


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Filters of a key listing (SPEC R1)."""

    owner_id: str | None = None
    enabled: bool | None = None
    expired: bool | None = None
    revoked: bool | None = None
    created_before: int | None = None
    created_since: int | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: int | None = None
    until: int | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """A page of a list, newest first; ``next_cursor`` (``None`` on the last page) asks for the next page."""

    items: list[T]
    next_cursor: str | None
