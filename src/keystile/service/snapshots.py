"""Records as the plain JSON that audit entries carry (SPEC A1): the one place that shapes them.

An entry's ``changes`` show a record the way the API shows it (times as RFC 3339 UTC text, credits and rate
limits as objects), so that a diff reads like the API's answers. The hash chain covers these bytes: a change of
shape here changes what every new entry records.
"""

from __future__ import annotations

from typing import Any

import msgspec

from keystile.core.models import Api, Credits, Identity, Key, RateLimit
from keystile.core.timefmt import to_rfc3339


def time_text(ms: int | None) -> str | None:
    """A time (epoch ms) as the API shows it, RFC 3339 in UTC; ``None`` stays ``None``."""
    return to_rfc3339(ms)


def _ratelimits(limits: tuple[RateLimit, ...]) -> list[dict[str, Any]]:
    return [
        {"name": rl.name, "limit": rl.limit, "duration_ms": rl.duration_ms, "auto_apply": rl.auto_apply}
        for rl in limits
    ]


def _credits(credits: Credits | None) -> dict[str, Any] | None:
    if credits is None:
        return None
    refill = credits.refill
    return {
        "remaining": credits.remaining,
        "refill": None if refill is None else {"amount": refill.amount, "interval": refill.interval, "day": refill.day},
    }


def _json(value: dict[str, Any]) -> dict[str, Any]:
    """A copy of free JSON (a record's meta) made of plain lists and dicts."""
    copied: dict[str, Any] = msgspec.to_builtins(value)
    return copied


def api_snapshot(api: Api) -> dict[str, Any]:
    """The settings of an API (what creating one sets)."""
    return {
        "name": api.name,
        "prefix": api.prefix,
        "default_ratelimits": _ratelimits(api.default_ratelimits),
        "max_key_age_days": api.max_key_age_days,
        "recoverable": api.recoverable,
        "ip_allowlist": list(api.ip_allowlist),
        "expire_stale_after_days": api.expire_stale_after_days,
    }


def key_snapshot(key: Key) -> dict[str, Any]:
    """The settings of a key (what creating one sets); never the key, nor its digest."""
    return {
        "name": key.name,
        "owner_id": key.owner_id,
        "meta": _json(key.meta),
        "permissions": list(key.permissions),
        "roles": list(key.roles),
        "expires_at": time_text(key.expires_at),
        "enabled": key.enabled,
        "credits": _credits(key.credits),
        "ratelimits": _ratelimits(key.ratelimits),
        "ip_allowlist": list(key.ip_allowlist),
    }


def identity_snapshot(identity: Identity) -> dict[str, Any]:
    """The settings of an identity that an update may change."""
    return {
        "meta": _json(identity.meta),
        "ratelimits": _ratelimits(identity.ratelimits),
        "credits": _credits(identity.credits),
    }


def root_key_snapshot(key: Key) -> dict[str, Any]:
    """A root key as the API lists it; never the key, nor its digest."""
    return {
        "id": key.id,
        "start": key.start,
        "name": key.name,
        "permissions": list(key.permissions),
        "created_at": time_text(key.created_at),
        "expires_at": time_text(key.expires_at),
        "revoked_at": time_text(key.revoked_at),
        "last_used_at": time_text(key.last_used_at),
    }
