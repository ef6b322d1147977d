"""Standalone rate limits (SPEC L4): limits that are not tied to a key, such as logins per IP."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from keystile.schemas.common import TimeOut, _In


class RatelimitRequest(_In):
    namespace: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="What is limited, such as `login` or `email.send`.")
    ]
    identifier: Annotated[
        str, Meta(min_length=1, max_length=256, description="Who is limited, such as a user id or an IP address.")
    ]
    limit: Annotated[int, Meta(ge=1, le=10**9, description="Requests of cost 1 allowed per duration.")]
    duration_ms: Annotated[int, Meta(ge=1, le=365 * 86_400_000, description="Window length in milliseconds.")]
    cost: Annotated[int, Meta(ge=0, le=10**9)] = 1


class RatelimitResponse(Struct):
    success: bool
    limit: int
    remaining: int
    reset_at: TimeOut
