"""Verification (SPEC V1): the body of ``POST /v1/keys/verify`` and its answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from keystile.schemas.common import LimitName, TimeOut, _In


class VerifyCredits(_In):
    cost: Annotated[int, Meta(ge=0, le=10**9)] = 1


class VerifyRateLimit(_In):
    name: LimitName
    cost: Annotated[int, Meta(ge=0, le=10**9)] = 1


class VerifyRequest(_In):
    key: Annotated[str, Meta(max_length=4096, description="The key to verify.")]
    api_id: str | None = None
    permissions: (
        Annotated[
            str, Meta(max_length=4096, description="A permission query, such as `docs.read AND (docs.write OR admin)`.")
        ]
        | None
    ) = None
    credits: VerifyCredits | None = None
    ratelimits: list[VerifyRateLimit] | None = None
    ip: (
        Annotated[
            str,
            Meta(
                max_length=64,
                extra_json_schema={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
                description="The client's IP address, checked against allowlists.",
            ),
        ]
        | None
    ) = None
    tags: Annotated[list[Annotated[str, Meta(max_length=128)]], Meta(max_length=20)] | None = None


class RateLimitState(Struct):
    name: str
    limit: int
    remaining: int
    reset_at: TimeOut


class RemainingOut(Struct):
    remaining: int


class VerifyResponse(Struct, omit_defaults=False):
    valid: bool
    code: Literal[
        "VALID",
        "NOT_FOUND",
        "REVOKED",
        "DISABLED",
        "EXPIRED",
        "FORBIDDEN",
        "INSUFFICIENT_PERMISSIONS",
        "RATE_LIMITED",
        "USAGE_EXCEEDED",
    ]
    key_id: str | None = None
    api_id: str | None = None
    name: str | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = None
    permissions: list[str] | None = None
    roles: list[str] | None = None
    expires_at: TimeOut | None = None
    credits: RemainingOut | None = None
    ratelimits: list[RateLimitState] | None = None
