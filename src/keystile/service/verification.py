"""Verification as a service (SPEC V1): the verifier, behind a root key's ``keys.verify`` scope."""

from __future__ import annotations

from keystile.core.models import ROOT_API_ID
from keystile.core.verify import NOT_FOUND, VerifyResult
from keystile.schemas import VerifyRequest
from keystile.service.authz import Principal
from keystile.service.context import Context


class VerificationService:
    def __init__(self, ctx: Context) -> None:
        self._verifier = ctx.verifier

    def verify_cached(self, principal: Principal, request: VerifyRequest) -> VerifyResult | None:
        """Answer from the cache alone, or ``None`` when storage must be asked (then await :meth:`verify`).

        Raises ``Forbidden`` when the root key may verify keys of no API, ``InvalidInput`` for a bad ``ip`` or
        permission query.
        """
        principal.require_any("keys.verify")
        if request.api_id == ROOT_API_ID:
            return NOT_FOUND
        return self._verifier.verify_cached(
            request.key,
            api_id=request.api_id,
            permissions=request.permissions,
            ip=request.ip,
            apis=principal.scope("keys.verify"),
            cost=request.credits.cost if request.credits is not None else None,
            ratelimits=_named(request),
        )

    async def verify(self, principal: Principal, request: VerifyRequest) -> VerifyResult:
        """Verify a key for a root key with ``keys.verify`` (keys of APIs out of its scope are ``NOT_FOUND``)."""
        principal.require_any("keys.verify")
        if request.api_id == ROOT_API_ID:
            return NOT_FOUND
        # Not through verify_cached first: Verifier.verify answers from the cache as cheaply.
        return await self._verifier.verify(
            request.key,
            api_id=request.api_id,
            permissions=request.permissions,
            ip=request.ip,
            apis=principal.scope("keys.verify"),
            cost=request.credits.cost if request.credits is not None else None,
            ratelimits=_named(request),
        )


def _named(request: VerifyRequest) -> list[tuple[str, int]] | None:
    if not request.ratelimits:
        return None
    return [(limit.name, limit.cost) for limit in request.ratelimits]
