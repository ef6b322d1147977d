"""Standalone rate limiting (SPEC L4): limits that are not tied to a key, such as logins per IP or e-mails per user.

They run through the verifier's spender, so they live where key limits live: in this process's memory by
default, in Redis (exact across instances) when one is configured.
"""

from __future__ import annotations

from keystile.core.ports import Outcome, Spend
from keystile.core.ratelimit import Bucket
from keystile.errors import StorageError
from keystile.service.authz import Principal
from keystile.service.context import Context


def bucket_of(namespace: str, identifier: str, limit: int, duration_ms: int, cost: int = 1) -> Bucket:
    """The bucket of a namespace and identifier; a namespace holds no ``:``, so no two pairs share a bucket."""
    return Bucket(f"l4:{namespace}:{identifier}", namespace, limit, duration_ms, cost)


class RatelimitService:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def limit(
        self, principal: Principal, namespace: str, identifier: str, *, limit: int, duration_ms: int, cost: int = 1
    ) -> Outcome:
        """Spend ``cost`` from the bucket of ``(namespace, identifier)``, which allows ``limit`` requests of cost 1
        per ``duration_ms``: ``VALID`` or ``RATE_LIMITED``, with the bucket's state (a refused request spends
        nothing).

        Needs ``keys.verify`` for every API: the permission vocabulary (SPEC K6) has none of its own for this, and
        deciding whether a request may pass is what ``keys.verify`` grants. A root key scoped to one API may not,
        since namespaces are deployment-wide. Raises :class:`StorageError` without a rate-limit backend.
        """
        principal.require("keys.verify")
        spender = self._ctx.verifier.spender
        if spender is None:
            raise StorageError("no rate-limit backend is configured", code="ratelimit_unavailable")
        spend = Spend((bucket_of(namespace, identifier, limit, duration_ms, cost),), None, 0)
        now = self._ctx.clock.now() * 1000
        outcome = spender.spend_now(spend, now)
        if outcome is None:
            outcome = await spender.spend(spend, now)
        return outcome
