"""The customer portal (SPEC D2): a one-time sign-in link for one owner of one API, within a policy."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from keystile.core.commands import NewCredits
from keystile.core.models import RateLimit
from keystile.schemas.common import OwnerId, Permission, TimeOut, _In, utc
from keystile.schemas.limits import CreditsSpec, RateLimitSpec, new_credits, ratelimits_of


class PortalPolicySpec(_In):
    """What the customer may do in the portal."""

    max_keys: Annotated[int, Meta(ge=0, le=1000, description="The most live keys the owner may hold.")] | None = None
    permissions: Annotated[
        list[Permission], Meta(max_length=100, description="The most a customer key may hold; none by default.")
    ] = []
    ratelimits: Annotated[list[RateLimitSpec], Meta(max_length=20, description="Given to every new key.")] = []
    credits: Annotated[CreditsSpec, Meta(description="The balance every new key starts with.")] | None = None
    max_expires_days: (
        Annotated[int, Meta(ge=1, le=36_500, description="New keys expire within this many days.")] | None
    ) = None


class PortalSessionCreate(_In):
    api_id: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^api_[0-9A-Za-z]{1,60}$")]
    owner_id: OwnerId
    return_url: (
        Annotated[str, Meta(max_length=2048, pattern=r"^https?://[^\s]+$", description="Where 'Back' leads.")] | None
    ) = None
    ttl_s: Annotated[int, Meta(ge=1, le=86_400, description="How long the link is valid; default 600.")] | None = None
    policy: PortalPolicySpec | None = None


class PortalSessionOut(Struct):
    url: Annotated[str, Meta(description="The one-time sign-in link: hand it to the customer (valid once).")]
    expires_at: TimeOut


def portal_ratelimits(spec: PortalPolicySpec) -> tuple[RateLimit, ...]:
    return tuple(ratelimits_of(spec.ratelimits))


def portal_credits(spec: PortalPolicySpec) -> NewCredits | None:
    return new_credits(spec.credits)


def portal_session_out(url: str, expires_at: int) -> PortalSessionOut:
    return PortalSessionOut(url, utc(expires_at))
