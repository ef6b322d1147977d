"""What the services are asked to do: the inputs of their commands, free of any wire format.

The edges (the HTTP routes, the CLI) decode and validate their input against the wire schemas, then hand the
services these values (:mod:`keystile.schemas` turns one into the other). A ``New...`` value describes a record
to create; an ``...Update`` value describes a change, field by field, where :data:`KEEP` leaves a field as it is.
Values are taken as given: the services check what the wire schemas cannot (U+0000, sizes, permissions, names
that must exist, times that can be written back) and raise :class:`~keystile.errors.InvalidInput` naming the
field as a JSON pointer.

Times are aware datetimes, as decoded: the services turn them into epoch milliseconds and refuse the ones that
cannot be written back (year 10000 in UTC).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from keystile.core.keys import DEFAULT_PREFIX
from keystile.core.models import RateLimit, Refill, RefillInterval

CreditsOp = Literal["set", "add", "subtract"]
HashVariant = Literal["sha256_hex", "sha256_base64"]


class Keep(enum.Enum):
    """The type of :data:`KEEP`."""

    KEEP = "keep"


KEEP = Keep.KEEP
"""An update's value for a field that stays as it is."""
JsonPatch: TypeAlias = dict[str, Any]
"""An RFC 7396 JSON Merge Patch of a JSON object: members merge, ``None`` removes one."""


@dataclass(frozen=True, slots=True)
class NewCredits:
    """A balance to set: ``remaining`` uses, optionally refilled (SPEC L3)."""

    remaining: int
    refill: Refill | None = None


@dataclass(frozen=True, slots=True)
class RefillUpdate:
    """A change of a refill; ``day=None`` removes the day."""

    amount: int | Keep = KEEP
    interval: RefillInterval | Keep = KEEP
    day: int | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class CreditsUpdate:
    """A change of a balance, merged into the current one (which needs ``remaining`` when there is none yet);
    ``refill=None`` removes the refill."""

    remaining: int | Keep = KEEP
    refill: RefillUpdate | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class NewApi:
    """An API to create (SPEC K1)."""

    name: str
    prefix: str = DEFAULT_PREFIX
    default_ratelimits: Sequence[RateLimit] = ()
    max_key_age_days: int | None = None
    recoverable: bool = False
    ip_allowlist: Sequence[str] = ()
    expire_stale_after_days: int | None = None


@dataclass(frozen=True, slots=True)
class ApiUpdate:
    """A change of an API (lists replace the whole list)."""

    name: str | Keep = KEEP
    prefix: str | Keep = KEEP
    default_ratelimits: Sequence[RateLimit] | Keep = KEEP
    max_key_age_days: int | Keep | None = KEEP
    recoverable: bool | Keep = KEEP
    ip_allowlist: Sequence[str] | Keep = KEEP
    expire_stale_after_days: int | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key to create (SPEC K4); ``credits=None`` is unlimited."""

    name: str | None = None
    owner_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    permissions: Sequence[str] = ()
    roles: Sequence[str] = ()
    expires_at: datetime | None = None
    enabled: bool = True
    credits: NewCredits | None = None
    ratelimits: Sequence[RateLimit] = ()
    ip_allowlist: Sequence[str] = ()
    recoverable: bool | None = None
    """Keep the key encrypted so that it can be shown again (SPEC K3); ``None``: as its API says."""


@dataclass(frozen=True, slots=True)
class KeyHash:
    """The SHA-256 digest of a key to import, as another system exported it: hex, or base64 (Unkey's)."""

    value: str
    variant: HashVariant = "sha256_hex"


@dataclass(frozen=True, slots=True)
class ImportedKey:
    """A key to import (SPEC R4): its plain text (``key``) or its digest (``hash``), exactly one of them, and
    what the new key record holds. The key keeps its own format; only its SHA-256 digest is stored."""

    spec: NewKey = field(default_factory=NewKey)
    key: str | None = None
    hash: KeyHash | None = None


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """A change of a key: ``meta`` is a merge patch of the key's meta (``None`` removes it all), ``credits`` a
    change of its balance (``None``: unlimited); lists replace the whole list."""

    name: str | Keep | None = KEEP
    owner_id: str | Keep | None = KEEP
    meta: JsonPatch | Keep | None = KEEP
    permissions: Sequence[str] | Keep = KEEP
    roles: Sequence[str] | Keep = KEEP
    expires_at: datetime | Keep | None = KEEP
    enabled: bool | Keep = KEEP
    credits: CreditsUpdate | Keep | None = KEEP
    ratelimits: Sequence[RateLimit] | Keep = KEEP
    ip_allowlist: Sequence[str] | Keep = KEEP


@dataclass(frozen=True, slots=True)
class NewIdentity:
    """The identity of an owner to create (SPEC K5)."""

    owner_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    ratelimits: Sequence[RateLimit] = ()
    credits: NewCredits | None = None


@dataclass(frozen=True, slots=True)
class IdentityUpdate:
    """A change of an identity, as :class:`KeyUpdate` changes those fields of a key."""

    meta: JsonPatch | Keep | None = KEEP
    ratelimits: Sequence[RateLimit] | Keep = KEEP
    credits: CreditsUpdate | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class NewRootKey:
    """A root key to create (SPEC K6)."""

    permissions: Sequence[str]
    name: str | None = None
    expires_at: datetime | None = None
