"""Keystile's records in Unkey's shapes, and Unkey's inputs as Keystile's commands.

What does not map one to one is decided here:

- Unkey's rate limits have ids; Keystile's are named per key or identity, so the id is derived from the holder
  and the name (stable: the same limit has the same id in ``getKey`` and ``verifyKey``).
- Unkey's permissions and roles have ids; Keystile's permissions are slugs and its roles are names within an
  API, so both use the slug or name as their id.
- A key's ``externalId`` is Keystile's ``owner_id``; its ``identity`` is the owner's identity when one exists,
  else an identity whose id is the owner id itself (Unkey creates identities implicitly, Keystile does not).
- ``meta`` in an update replaces the whole object, as in Unkey (Keystile's own API merges).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from msgspec import UNSET

from keystile.core.commands import KEEP, CreditsUpdate, Keep, NewCredits, RefillUpdate
from keystile.core.models import Credits, Identity, Key, RateLimit, Refill
from keystile.core.verify import Code
from keystile.unkey import _wire as w

CODES = {
    Code.VALID: "VALID",
    Code.NOT_FOUND: "NOT_FOUND",
    # Unkey has no revoked state: a key deleted softly verifies as NOT_FOUND there, so a revoked key does here.
    Code.REVOKED: "NOT_FOUND",
    Code.DISABLED: "DISABLED",
    Code.EXPIRED: "EXPIRED",
    Code.FORBIDDEN: "FORBIDDEN",
    Code.INSUFFICIENT_PERMISSIONS: "INSUFFICIENT_PERMISSIONS",
    Code.RATE_LIMITED: "RATE_LIMITED",
    Code.USAGE_EXCEEDED: "USAGE_EXCEEDED",
}


def ratelimit_id(holder_id: str, name: str) -> str:
    """The id of a rate limit named ``name`` of the key or identity ``holder_id``."""
    return "rl_" + hashlib.sha256(f"{holder_id}:{name}".encode()).hexdigest()[:24]


def ratelimits_in(given: Sequence[w.RatelimitIn] | None) -> list[RateLimit]:
    return [RateLimit(r.name, r.limit, r.duration, r.auto_apply) for r in given or ()]


def ratelimits_out(holder_id: str, limits: Sequence[RateLimit]) -> list[w.RatelimitOut] | None:
    if not limits:
        return None
    return [
        w.RatelimitOut(ratelimit_id(holder_id, r.name), r.name, r.limit, r.duration_ms, r.auto_apply) for r in limits
    ]


def _refill_in(given: w.RefillIn | None) -> Refill | None:
    return None if given is None else Refill(given.amount, given.interval, given.refill_day)


def credits_in(given: w.CreditsIn | None) -> NewCredits | None:
    """Unkey's credits as a balance to set (``remaining: null``: unlimited)."""
    if given is None or given.remaining is None:
        return None
    return NewCredits(given.remaining, _refill_in(given.refill))


def credits_update(given: w.CreditsUpdateIn | None) -> CreditsUpdate | None:
    """Unkey's credits change as Keystile's (``None``: unlimited): fields left out stay, ``refill: null`` drops
    the refill. A refill is given whole in Unkey, so it replaces the current one."""
    if given is None or given.remaining is None:
        return None
    refill: RefillUpdate | Keep | None = KEEP
    if given.refill is None:
        refill = None
    elif given.refill is not UNSET:
        refill = RefillUpdate(given.refill.amount, given.refill.interval, given.refill.refill_day)
    remaining = KEEP if given.remaining is UNSET else given.remaining
    return CreditsUpdate(remaining=remaining, refill=refill)


def credits_out(credits: Credits | None) -> w.CreditsOut | None:
    if credits is None:
        return None
    refill = credits.refill
    out_refill = None if refill is None else w.RefillOut(refill.interval, refill.amount, refill.day)
    return w.CreditsOut(remaining=credits.remaining, refill=out_refill)


def identity_out(identity: Identity) -> w.IdentityOut:
    return w.IdentityOut(
        id=identity.id,
        external_id=identity.owner_id,
        meta=identity.meta,
        ratelimits=ratelimits_out(identity.id, identity.ratelimits),
    )


def owner_identity(owner_id: str | None, identity: Identity | None) -> w.IdentityOut | None:
    """A key's ``identity``: its owner's identity, or one named by the owner id alone when it has none."""
    if identity is not None:
        return identity_out(identity)
    return None if owner_id is None else w.IdentityOut(id=owner_id, external_id=owner_id)


def key_out(key: Key, identity: Identity | None, plaintext: str | None = None) -> w.KeyOut:
    return w.KeyOut(
        key_id=key.id,
        start=key.start,
        enabled=key.enabled,
        created_at=key.created_at,
        name=key.name,
        meta=key.meta or None,
        updated_at=key.updated_at,
        last_used_at=key.last_used_at,
        expires=key.expires_at,
        permissions=list(key.permissions),
        roles=list(key.roles),
        credits=credits_out(key.credits),
        identity=owner_identity(key.owner_id, identity),
        plaintext=plaintext,
        ratelimits=ratelimits_out(key.id, key.ratelimits),
    )


def permissions_out(slugs: Sequence[str]) -> list[w.PermissionOut]:
    return [w.PermissionOut(id=slug, name=slug, slug=slug) for slug in slugs]


def replacing_patch(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON Merge Patch (RFC 7396) that turns ``current`` into ``new``: members that go are ``None``, nested
    objects are patched the same way (a merge patch would merge them otherwise)."""
    patch: dict[str, Any] = {name: None for name in current if name not in new}
    for name, value in new.items():
        before = current.get(name)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[name] = replacing_patch(before, value)
        else:
            patch[name] = value
    return patch
