"""Standalone rate limiting (SPEC L4): ``POST /v1/ratelimit`` for limits that are not tied to a key."""

from __future__ import annotations

import math

from starlette.responses import Response

from keystile.core.timefmt import to_rfc3339
from keystile.core.verify import Code
from keystile.operations import RATELIMIT
from keystile.schemas import RatelimitRequest, RatelimitResponse
from keystile.server.routing import Call, Operation


async def ratelimit(call: Call) -> Response:
    request = await call.body(RatelimitRequest)
    outcome = await call.ks.ratelimits.limit(
        call.actor.principal,
        request.namespace,
        request.identifier,
        limit=request.limit,
        duration_ms=request.duration_ms,
        cost=request.cost,
    )
    [state] = outcome.ratelimits
    return call.json(
        RatelimitResponse(
            success=outcome.code == Code.VALID,
            limit=state.limit,
            remaining=state.remaining,
            reset_at=to_rfc3339(math.ceil(state.reset_at)) or "",
        )
    )


OPERATIONS = [
    Operation(
        RATELIMIT,
        ratelimit,
        "Spend from a rate limit that is not tied to a key (per IP, per user...)",
        "Rate limits",
        "keys.verify",
        errors=(400, 401, 403),
        description=(
            "Always 200 for a valid request: `success` says whether it passes. The bucket of a `namespace` and "
            "`identifier` lets an idle identifier make exactly `limit` requests of cost 1 at once, then gives "
            "capacity back at `limit` per `duration_ms` (GCRA); a refused request spends nothing. Limits live where "
            "key limits live (in memory, or in Redis when configured). Needs `keys.verify` for every API: deciding "
            "whether a request may pass is what that permission grants, and namespaces are deployment-wide."
        ),
    ),
]
