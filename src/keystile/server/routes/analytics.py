"""Verification counts over time (SPEC O3): ``GET /v1/analytics/verifications``, answered from rollups."""

from __future__ import annotations

from starlette.responses import Response

from keystile.operations import VERIFICATION_COUNTS
from keystile.schemas import series_out
from keystile.server.routes.logs import event_filter
from keystile.server.routing import Call, Operation
from keystile.service.analytics import MAX_BUCKETS, MAX_COUNTS


async def verification_counts(call: Call) -> Response:
    params = call.params
    series = await call.ks.analytics.verifications(
        call.actor.principal,
        event_filter(params),
        granularity=params.get("granularity"),
        group_by=params.get("group_by"),
    )
    return call.json(series_out(series.granularity, series.group_by, series.since, series.until, series.counts))


OPERATIONS = [
    Operation(
        VERIFICATION_COUNTS,
        verification_counts,
        "Count verifications per minute, hour or day, grouped by outcome, key or owner",
        "Analytics",
        "analytics.read",
        description=(
            "Answered from rollups kept per minute, hour and day as events are written, never from raw events, so "
            f"its cost does not grow with traffic. One query covers at most {MAX_BUCKETS:,} buckets and answers at "
            f"most {MAX_COUNTS:,} counts (else a 400 that says how to narrow it). Items are oldest bucket first; "
            "buckets and groups without verifications are left out (they count zero). `group` is the outcome, the "
            "key id or the owner id, null for verifications without a key or owner. Scoping as in `GET /v1/logs`."
        ),
    ),
]
