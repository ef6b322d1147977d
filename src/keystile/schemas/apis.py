"""APIs, the keyspaces (SPEC K1): what creates and patches one, and how one is shown."""

from __future__ import annotations

from msgspec import UNSET, Struct, UnsetType

from keystile.core import keys as keyformat
from keystile.core.models import Api
from keystile.schemas.common import Allowlist, MaxKeyAge, Name, Prefix, Recoverable, StaleExpiry, TimeOut, _In, utc
from keystile.schemas.limits import RateLimitOut, RateLimitSpec, ratelimit_out


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
