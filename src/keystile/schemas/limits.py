"""Rate limits and credits as APIs, keys and identities carry them (SPEC L1, L3, K5), in and out."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from keystile.core.commands import KEEP, CreditsUpdate, Keep, NewCredits, RefillUpdate
from keystile.core.models import Credits, RateLimit, Refill
from keystile.schemas.common import Count, LimitName, _In, list_or_keep, or_keep


class RateLimitSpec(_In):
    name: LimitName
    limit: Annotated[int, Meta(ge=1, le=10**9, description="Requests of cost 1 allowed per duration.")]
    duration_ms: Annotated[int, Meta(ge=1, le=365 * 86_400_000, description="Window length in milliseconds.")]
    auto_apply: bool = True


class RefillSpec(_In):
    amount: Count
    interval: Literal["daily", "monthly"]
    day: Annotated[int, Meta(ge=1, le=31)] | None = None


class CreditsSpec(_In):
    remaining: Count
    refill: RefillSpec | None = None


class RefillPatch(_In):
    """A JSON Merge Patch of a refill: absent fields stay, ``day: null`` removes the day."""

    amount: Count | UnsetType = UNSET
    interval: Literal["daily", "monthly"] | UnsetType = UNSET
    day: Annotated[int, Meta(ge=1, le=31)] | UnsetType | None = UNSET


class CreditsPatch(_In):
    """A JSON Merge Patch of credits, merged into the current balance (which needs ``remaining`` when there is
    none yet); ``refill: null`` removes the refill, ``credits: null`` makes the credits unlimited."""

    remaining: Count | UnsetType = UNSET
    refill: RefillPatch | UnsetType | None = UNSET


class RateLimitOut(Struct):
    name: str
    limit: int
    duration_ms: int
    auto_apply: bool


class RefillOut(Struct):
    amount: int
    interval: str
    day: int | None


class CreditsOut(Struct):
    remaining: int
    refill: RefillOut | None = None


def ratelimit_out(limit: RateLimit) -> RateLimitOut:
    return RateLimitOut(limit.name, limit.limit, limit.duration_ms, limit.auto_apply)


def credits_out(credits: Credits | None) -> CreditsOut | None:
    if credits is None:
        return None
    refill = credits.refill
    return CreditsOut(
        credits.remaining,
        RefillOut(refill.amount, refill.interval, refill.day) if refill is not None else None,
    )


# -- wire -> command --------------------------------------------------------------------------------------------


def ratelimits_of(specs: list[RateLimitSpec]) -> list[RateLimit]:
    """Decoded rate limits as the services take them."""
    return [RateLimit(spec.name, spec.limit, spec.duration_ms, spec.auto_apply) for spec in specs]


def ratelimits_update(specs: list[RateLimitSpec] | UnsetType | None) -> list[RateLimit] | Keep:
    """The ``ratelimits`` member of a merge patch: absent keeps them, ``null`` removes them all."""
    given = list_or_keep(specs)
    return KEEP if isinstance(given, Keep) else ratelimits_of(given)


def new_credits(spec: CreditsSpec | None) -> NewCredits | None:
    """A decoded balance as the services take it (``None``: unlimited)."""
    if spec is None:
        return None
    refill = spec.refill
    return NewCredits(spec.remaining, None if refill is None else Refill(refill.amount, refill.interval, refill.day))


def credits_update(patch: CreditsPatch | UnsetType | None) -> CreditsUpdate | Keep | None:
    """The ``credits`` member of a merge patch: absent keeps the balance, ``null`` makes it unlimited."""
    if patch is None or isinstance(patch, UnsetType):
        return or_keep(patch)
    refill: RefillUpdate | Keep | None
    if isinstance(patch.refill, RefillPatch):
        given = patch.refill
        refill = RefillUpdate(or_keep(given.amount), or_keep(given.interval), or_keep(given.day))
    else:
        refill = or_keep(patch.refill)
    return CreditsUpdate(or_keep(patch.remaining), refill)
