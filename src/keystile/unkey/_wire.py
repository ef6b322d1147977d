"""Unkey's v2 bodies as msgspec structs: the field names (camelCase) and shapes of Unkey's OpenAPI description,
which its SDKs validate every answer against.

Request structs refuse unknown fields, as Unkey does. In update requests a field left out stays as it is and
``null`` clears it (``UNSET`` against ``None``). Answer structs leave out optional fields that are ``None``;
fields Unkey requires (``KeyCreditsData.remaining`` among them) are always written, ``null`` included.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

Id = Annotated[str, Meta(min_length=1, max_length=255)]
Slug = Annotated[str, Meta(min_length=1, max_length=512)]
Limit = Annotated[int, Meta(ge=1, le=10**9)]
Duration = Annotated[int, Meta(ge=1, le=365 * 86_400_000)]
Cost = Annotated[int, Meta(ge=0, le=10**9)]
Millis = Annotated[int, Meta(ge=0, le=253_402_300_799_999)]
Credits = Annotated[int, Meta(ge=0, le=2**53)]
Meta_ = dict[str, Any]


class _In(Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies."""


class _Out(Struct, rename="camel", omit_defaults=True, kw_only=True):
    """Base of answers."""


# -- shared parts ---------------------------------------------------------------------------------------------------


class RatelimitIn(_In):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
    limit: Limit
    duration: Duration
    auto_apply: bool = False


class RefillIn(_In):
    interval: Literal["daily", "monthly"]
    amount: Credits
    refill_day: Annotated[int, Meta(ge=1, le=31)] | None = None


class CreditsIn(_In):
    remaining: Credits | None
    refill: RefillIn | None = None


class CreditsUpdateIn(_In):
    remaining: Credits | UnsetType | None = UNSET
    refill: RefillIn | UnsetType | None = UNSET


class RefillOut(_Out):
    interval: str
    amount: int
    refill_day: int | None = None


class CreditsOut(_Out):
    remaining: int | None
    refill: RefillOut | None = None


class RatelimitOut(_Out):
    id: str
    name: str
    limit: int
    duration: int
    auto_apply: bool


class IdentityOut(_Out):
    id: str
    external_id: str
    meta: Meta_ | None = None
    ratelimits: list[RatelimitOut] | None = None


class PermissionOut(_Out):
    id: str
    name: str
    slug: str
    description: str | None = None


class RoleOut(_Out):
    id: str
    name: str
    description: str | None = None
    permissions: list[PermissionOut] | None = None


class Empty(_Out):
    pass


# -- keys -------------------------------------------------------------------------------------------------------------


class CreateKey(_In):
    api_id: Id
    prefix: str | None = None
    name: str | None = None
    byte_length: Annotated[int, Meta(ge=16, le=255)] | None = None
    external_id: Id | None = None
    meta: Meta_ | None = None
    roles: list[str] | None = None
    permissions: list[Slug] | None = None
    expires: Millis | None = None
    credits: CreditsIn | None = None
    ratelimits: list[RatelimitIn] | None = None
    enabled: bool | None = None
    recoverable: bool | None = None


class KeyCreatedOut(_Out):
    key_id: str
    key: str


class VerifyCreditsIn(_In):
    cost: Cost


class VerifyRatelimitIn(_In):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    cost: Cost | None = None
    limit: Limit | None = None
    duration: Duration | None = None


class VerifyKey(_In):
    key: Annotated[str, Meta(min_length=1, max_length=512)]
    tags: list[Annotated[str, Meta(max_length=128)]] | None = None
    permissions: str | None = None
    credits: VerifyCreditsIn | None = None
    keyspaces: list[Id] | None = None
    ratelimits: list[VerifyRatelimitIn] | None = None
    migration_id: str | None = None


class VerifyRatelimitOut(_Out):
    exceeded: bool
    id: str
    name: str
    limit: int
    duration: int
    reset: int
    remaining: int
    auto_apply: bool


class VerifyOut(_Out):
    valid: bool
    code: str
    key_id: str | None = None
    name: str | None = None
    meta: Meta_ | None = None
    expires: int | None = None
    credits: int | None = None
    enabled: bool | None = None
    permissions: list[str] | None = None
    roles: list[str] | None = None
    identity: IdentityOut | None = None
    ratelimits: list[VerifyRatelimitOut] | None = None


class KeyById(_In):
    key_id: Id


class GetKey(_In):
    key_id: Id
    decrypt: bool | None = None


class Whoami(_In):
    key: Annotated[str, Meta(min_length=1, max_length=512)]


class KeyOut(_Out):
    key_id: str
    start: str
    enabled: bool
    created_at: int
    name: str | None = None
    meta: Meta_ | None = None
    updated_at: int | None = None
    last_used_at: int | None = None
    expires: int | None = None
    permissions: list[str] | None = None
    roles: list[str] | None = None
    credits: CreditsOut | None = None
    identity: IdentityOut | None = None
    plaintext: str | None = None
    ratelimits: list[RatelimitOut] | None = None


class UpdateKey(_In):
    key_id: Id
    name: str | UnsetType | None = UNSET
    external_id: Id | UnsetType | None = UNSET
    meta: Meta_ | UnsetType | None = UNSET
    expires: Millis | UnsetType | None = UNSET
    credits: CreditsUpdateIn | UnsetType | None = UNSET
    ratelimits: list[RatelimitIn] | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    roles: list[str] | UnsetType = UNSET
    permissions: list[Slug] | UnsetType = UNSET


class DeleteKey(_In):
    key_id: Id
    permanent: bool = False


class RerollKey(_In):
    key_id: Id
    expiration: Annotated[int, Meta(ge=0, le=4_102_444_800_000)] | None


class UpdateCredits(_In):
    key_id: Id
    operation: Literal["set", "increment", "decrement"]
    value: Credits | UnsetType | None = UNSET


class KeyPermissions(_In):
    key_id: Id
    permissions: list[Slug]


class KeyRoles(_In):
    key_id: Id
    roles: list[Annotated[str, Meta(min_length=1, max_length=64)]]


class MigrateKeyIn(_In):
    hash: Annotated[str, Meta(min_length=3, max_length=512)]
    name: str | None = None
    external_id: Id | None = None
    meta: Meta_ | None = None
    roles: list[str] | None = None
    permissions: list[Slug] | None = None
    expires: Millis | None = None
    enabled: bool | None = None
    credits: CreditsIn | None = None
    ratelimits: list[RatelimitIn] | None = None


class MigrateKeys(_In):
    migration_id: Annotated[str, Meta(min_length=1, max_length=255)]
    api_id: Id
    keys: Annotated[list[MigrateKeyIn], Meta(min_length=1, max_length=1000)]


class MigratedOut(_Out):
    hash: str
    key_id: str


class MigrateOut(_Out):
    migrated: list[MigratedOut]
    failed: list[str]


# -- APIs -------------------------------------------------------------------------------------------------------------


class CreateApi(_In):
    name: Annotated[str, Meta(min_length=1, max_length=255)]


class ApiCreatedOut(_Out):
    api_id: str


class ApiById(_In):
    api_id: Id


class ApiOut(_Out):
    id: str
    name: str


class ListKeys(_In):
    api_id: Id
    limit: Annotated[int, Meta(ge=1, le=100)] = 100
    cursor: str | None = None
    external_id: Id | None = None
    decrypt: bool | None = None
    revalidate_keys_cache: bool | None = None


# -- identities -------------------------------------------------------------------------------------------------------


class CreateIdentity(_In):
    external_id: Annotated[str, Meta(min_length=1, max_length=255)]
    meta: Meta_ | None = None
    ratelimits: list[RatelimitIn] | None = None


class IdentityCreatedOut(_Out):
    identity_id: str


class IdentityRef(_In):
    identity: Annotated[str, Meta(min_length=1, max_length=255)]


class ListIdentities(_In):
    limit: Annotated[int, Meta(ge=1, le=100)] = 100
    cursor: str | None = None
    search: str | None = None


class UpdateIdentity(_In):
    identity: Annotated[str, Meta(min_length=1, max_length=255)]
    meta: Meta_ | UnsetType | None = UNSET
    ratelimits: list[RatelimitIn] | UnsetType | None = UNSET


# -- standalone rate limits -------------------------------------------------------------------------------------------


class RatelimitLimit(_In):
    namespace: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
    identifier: Annotated[str, Meta(min_length=1, max_length=256)]
    limit: Limit
    duration: Duration
    cost: Cost = 1


class RatelimitLimitOut(_Out):
    limit: int
    remaining: int
    reset: int
    success: bool
