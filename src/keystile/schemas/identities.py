"""Identities (SPEC K5): one customer's rate limits and credits, shared by all of its keys: what creates and
patches one (and the commands they become), and how one is shown."""

from __future__ import annotations

from typing import Any

from msgspec import UNSET, Struct, UnsetType

from keystile.core.commands import IdentityUpdate, NewIdentity
from keystile.core.jsonvalues import check_json
from keystile.core.models import Identity
from keystile.schemas.common import FreeJson, OwnerId, TimeOut, _In, or_keep, utc
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


class IdentityCreate(_In):
    owner_id: OwnerId
    meta: FreeJson = {}
    ratelimits: list[RateLimitSpec] = []
    credits: CreditsSpec | None = None


class IdentityPatch(_In):
    """A JSON Merge Patch (RFC 7396) of an identity: ``meta`` and ``credits`` merge member by member, ``null``
    removes (credits become unlimited, rate limits none)."""

    meta: FreeJson | UnsetType | None = UNSET
    ratelimits: list[RateLimitSpec] | UnsetType | None = UNSET
    credits: CreditsPatch | UnsetType | None = UNSET


class IdentityOut(Struct):
    id: str
    owner_id: str
    meta: dict[str, Any]
    ratelimits: list[RateLimitOut]
    credits: CreditsOut | None
    created_at: TimeOut
    updated_at: TimeOut


def identity_out(identity: Identity) -> IdentityOut:
    return IdentityOut(
        id=identity.id,
        owner_id=identity.owner_id,
        meta=identity.meta,
        ratelimits=[ratelimit_out(rl) for rl in identity.ratelimits],
        credits=credits_out(identity.credits),
        created_at=utc(identity.created_at),
        updated_at=utc(identity.updated_at),
    )


def new_identity(spec: IdentityCreate) -> NewIdentity:
    """The command a decoded ``IdentityCreate`` asks for."""
    return NewIdentity(
        owner_id=spec.owner_id,
        meta=spec.meta,
        ratelimits=ratelimits_of(spec.ratelimits),
        credits=new_credits(spec.credits),
    )


def identity_update(patch: dict[str, Any]) -> IdentityUpdate:
    """The change a JSON Merge Patch (RFC 7396) of an identity asks for; raises
    :class:`~keystile.errors.InvalidInput` naming the member that is wrong."""
    check_json(patch, "")
    given = convert(patch, IdentityPatch)
    return IdentityUpdate(
        meta=or_keep(given.meta),
        ratelimits=ratelimits_update(given.ratelimits),
        credits=credits_update(given.credits),
    )
