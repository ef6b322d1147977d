"""Keys (SPEC K2-K4, R1, R2, L3): creating (one or many), patching, rerolling, changing credits (and the commands
they become), and showing."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from keystile.core.commands import KeyUpdate, NewKey
from keystile.core.jsonvalues import check_json
from keystile.core.models import Key, KeyView
from keystile.core.timefmt import to_rfc3339
from keystile.schemas.common import (
    MAX_BULK,
    Allowlist,
    Count,
    FreeJson,
    Name,
    OwnerId,
    Permission,
    RoleName,
    TimeOut,
    Timestamp,
    _In,
    list_or_keep,
    or_keep,
    utc,
)
from keystile.schemas.decoding import convert
from keystile.schemas.limits import (
    CreditsOut,
    CreditsPatch,
    CreditsSpec,
    RateLimitOut,
    RateLimitSpec,
    credits_out,
    credits_update,
    new_credits,
    ratelimit_out,
    ratelimits_of,
    ratelimits_update,
)


class KeyCreate(_In):
    name: Name | None = None
    owner_id: OwnerId | None = None
    meta: FreeJson = {}
    permissions: list[Permission] = []
    roles: list[RoleName] = []
    expires_at: Timestamp | None = None
    enabled: bool = True
    credits: CreditsSpec | None = None
    ratelimits: list[RateLimitSpec] = []
    ip_allowlist: Allowlist = []
    recoverable: Annotated[
        bool | None,
        Meta(
            description="Keep the key encrypted so that it can be read back (`GET /v1/keys/{key_id}/plaintext`). "
            "Default: the API's `recoverable`; `false` opts out; `true` in an API that is not recoverable is a "
            "400 `api_not_recoverable`."
        ),
    ] = None


class KeyPatch(_In):
    """A JSON Merge Patch (RFC 7396) of a key: absent fields stay, ``null`` removes or resets; ``meta`` and
    ``credits`` merge member by member."""

    name: Name | UnsetType | None = UNSET
    owner_id: OwnerId | UnsetType | None = UNSET
    meta: FreeJson | UnsetType | None = UNSET
    permissions: list[Permission] | UnsetType | None = UNSET
    roles: list[RoleName] | UnsetType | None = UNSET
    expires_at: Timestamp | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    credits: CreditsPatch | UnsetType | None = UNSET
    ratelimits: list[RateLimitSpec] | UnsetType | None = UNSET
    ip_allowlist: Allowlist | UnsetType | None = UNSET


class BulkKeyCreate(_In):
    keys: Annotated[list[KeyCreate], Meta(min_length=1, max_length=MAX_BULK)]


class KeyOut(Struct):
    id: str
    api_id: str
    start: str
    name: str | None
    owner_id: str | None
    meta: dict[str, Any]
    permissions: list[str]
    roles: list[str]
    created_at: TimeOut
    updated_at: TimeOut
    expires_at: TimeOut | None
    enabled: bool
    revoked_at: TimeOut | None
    last_used_at: TimeOut | None
    credits: CreditsOut | None
    ratelimits: list[RateLimitOut]
    ip_allowlist: list[str]
    rotated_from: str | None
    rotated_to: str | None
    stale: Annotated[bool, Meta(description="Older than its API's `max_key_age_days`: due for rotation.")]


class KeyCreated(KeyOut):
    key: Annotated[str, Meta(description="The key in plain text. Shown this once; Keystile keeps only its hash.")]


class BulkKeysCreated(Struct):
    items: list[KeyCreated]


class KeyPlaintext(Struct):
    """A recoverable key read back in plain text."""

    key_id: str
    key: Annotated[str, Meta(description="The key in plain text. Every read is audited as `key.decrypt`.")]


GracePeriod = Annotated[
    int,
    Meta(ge=0, le=365 * 86_400_000, description="How long the old key keeps working, in milliseconds (default 0)."),
]


class RerollSpec(_In):
    grace_period_ms: GracePeriod = 0
    expires_at: Timestamp | None = None


class CreditsChange(_In):
    op: Literal["set", "add", "subtract"]
    amount: Annotated[
        Count | None,
        Meta(description="Credits to set, add or subtract; `null` with `set` makes the credits unlimited."),
    ]


def _key_fields(key: Key) -> dict[str, Any]:
    return {
        "id": key.id,
        "api_id": key.api_id,
        "start": key.start,
        "name": key.name,
        "owner_id": key.owner_id,
        "meta": key.meta,
        "permissions": list(key.permissions),
        "roles": list(key.roles),
        "created_at": utc(key.created_at),
        "updated_at": utc(key.updated_at),
        "expires_at": to_rfc3339(key.expires_at),
        "enabled": key.enabled,
        "revoked_at": to_rfc3339(key.revoked_at),
        "last_used_at": to_rfc3339(key.last_used_at),
        "credits": credits_out(key.credits),
        "ratelimits": [ratelimit_out(rl) for rl in key.ratelimits],
        "ip_allowlist": list(key.ip_allowlist),
        "rotated_from": key.rotated_from,
        "rotated_to": key.rotated_to,
    }


def key_out(key: Key, *, stale: bool = False) -> KeyOut:
    """A key as the API shows it; ``stale`` is decided by the caller, who knows the API and the time."""
    return KeyOut(**_key_fields(key), stale=stale)


def key_view_out(view: KeyView) -> KeyOut:
    """A key with its ``stale`` marker (as :meth:`KeyService.view` gives it) as the API shows it."""
    return key_out(view.key, stale=view.stale)


def key_created(key: Key, plain: str) -> KeyCreated:
    """A key just made (never stale) with its plain text."""
    return KeyCreated(**_key_fields(key), stale=False, key=plain)


def new_key(spec: KeyCreate) -> NewKey:
    """The command a decoded ``KeyCreate`` asks for."""
    return NewKey(
        name=spec.name,
        owner_id=spec.owner_id,
        meta=spec.meta,
        permissions=spec.permissions,
        roles=spec.roles,
        expires_at=spec.expires_at,
        enabled=spec.enabled,
        credits=new_credits(spec.credits),
        ratelimits=ratelimits_of(spec.ratelimits),
        ip_allowlist=spec.ip_allowlist,
        recoverable=spec.recoverable,
    )


def key_update(patch: dict[str, Any]) -> KeyUpdate:
    """The change a JSON Merge Patch (RFC 7396) of a key asks for; raises :class:`~keystile.errors.InvalidInput`
    naming the member that is wrong (``null`` removes a value or empties a list)."""
    check_json(patch, "")
    given = convert(patch, KeyPatch)
    return KeyUpdate(
        name=or_keep(given.name),
        owner_id=or_keep(given.owner_id),
        meta=or_keep(given.meta),
        permissions=list_or_keep(given.permissions),
        roles=list_or_keep(given.roles),
        expires_at=or_keep(given.expires_at),
        enabled=or_keep(given.enabled),
        credits=credits_update(given.credits),
        ratelimits=ratelimits_update(given.ratelimits),
        ip_allowlist=list_or_keep(given.ip_allowlist),
    )
