"""APIs, the keyspaces (SPEC K1): what creates and patches one (and the commands they become), and how one is
shown."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, Struct, UnsetType

from keystile.core import keys as keyformat
from keystile.core.commands import ApiUpdate, NewApi
from keystile.core.jsonvalues import check_json
from keystile.core.models import Api
from keystile.schemas.common import (
    Allowlist,
    MaxKeyAge,
    Name,
    Prefix,
    Recoverable,
    StaleExpiry,
    TimeOut,
    _In,
    list_or_keep,
    or_keep,
    utc,
)
from keystile.schemas.decoding import convert
from keystile.schemas.limits import RateLimitOut, RateLimitSpec, ratelimit_out, ratelimits_of, ratelimits_update


class ApiCreate(_In):
    name: Name
    prefix: Prefix = keyformat.DEFAULT_PREFIX
    default_ratelimits: list[RateLimitSpec] = []
    max_key_age_days: MaxKeyAge | None = None
    recoverable: Recoverable = False
    ip_allowlist: Allowlist = []
    expire_stale_after_days: StaleExpiry | None = None


class ApiPatch(_In):
    """A JSON Merge Patch (RFC 7396) of an API: absent fields stay, ``null`` resets to the default."""

    name: Name | UnsetType = UNSET
    prefix: Prefix | UnsetType = UNSET
    default_ratelimits: list[RateLimitSpec] | UnsetType | None = UNSET
    max_key_age_days: MaxKeyAge | UnsetType | None = UNSET
    recoverable: Recoverable | UnsetType = UNSET
    ip_allowlist: Allowlist | UnsetType | None = UNSET
    expire_stale_after_days: StaleExpiry | UnsetType | None = UNSET


class ApiOut(Struct):
    id: str
    name: str
    prefix: str
    created_at: TimeOut
    updated_at: TimeOut
    default_ratelimits: list[RateLimitOut]
    max_key_age_days: int | None
    recoverable: bool
    ip_allowlist: list[str]
    expire_stale_after_days: int | None


def api_out(api: Api) -> ApiOut:
    return ApiOut(
        id=api.id,
        name=api.name,
        prefix=api.prefix,
        created_at=utc(api.created_at),
        updated_at=utc(api.updated_at),
        default_ratelimits=[ratelimit_out(rl) for rl in api.default_ratelimits],
        max_key_age_days=api.max_key_age_days,
        recoverable=api.recoverable,
        ip_allowlist=list(api.ip_allowlist),
        expire_stale_after_days=api.expire_stale_after_days,
    )


def new_api(spec: ApiCreate) -> NewApi:
    """The command a decoded ``ApiCreate`` asks for."""
    return NewApi(
        name=spec.name,
        prefix=spec.prefix,
        default_ratelimits=ratelimits_of(spec.default_ratelimits),
        max_key_age_days=spec.max_key_age_days,
        recoverable=spec.recoverable,
        ip_allowlist=spec.ip_allowlist,
        expire_stale_after_days=spec.expire_stale_after_days,
    )


def api_update(patch: dict[str, Any]) -> ApiUpdate:
    """The change a JSON Merge Patch (RFC 7396) of an API asks for; raises :class:`~keystile.errors.InvalidInput`
    naming the member that is wrong (``null`` resets a member to its default)."""
    check_json(patch, "")
    given = convert(patch, ApiPatch)
    return ApiUpdate(
        name=or_keep(given.name),
        prefix=or_keep(given.prefix),
        default_ratelimits=ratelimits_update(given.default_ratelimits),
        max_key_age_days=or_keep(given.max_key_age_days),
        recoverable=or_keep(given.recoverable),
        ip_allowlist=list_or_keep(given.ip_allowlist),
        expire_stale_after_days=or_keep(given.expire_stale_after_days),
    )
