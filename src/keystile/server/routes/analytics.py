"""Verification counts over time (SPEC O3): ``GET /v1/analytics/verifications``, answered from rollups."""

from __future__ import annotations

from starlette.responses import Response

from keystile.schemas import VerificationSeries, series_out
from keystile.server.routes.logs import FILTERS, event_filter
from keystile.server.routing import Call, Operation, Param
from keystile.service.analytics import BUCKET_MS, GRANULARITIES, GROUPINGS, MAX_BUCKETS, MAX_COUNTS


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
        "GET",
        "/v1/analytics/verifications",
        verification_counts,
        "Count verifications per minute, hour or day, grouped by outcome, key or owner",
        "Analytics",
        "analytics.read",
        response=VerificationSeries,
        query=(
            *FILTERS,
            Param(
                "granularity",
                "string",
                f"The bucket size: {', '.join(BUCKET_MS)} (default `hour`).",
                {"enum": list(GRANULARITIES)},
            ),
            Param(
                "group_by",
                "string",
                "Count per `outcome` (the default), per `key` or per `owner`.",
                {"enum": list(GROUPINGS)},
            ),
            Param(
                "since",
                "date-time",
                "Start of the range (widened to the start of its bucket). Default: 60 minutes, 24 hours or 30 days "
                "before `until`.",
            ),
            Param("until", "date-time", "End of the range, exclusive (widened to the end of its bucket); default now."),
        ),
        description=(
            "Answered from rollups kept per minute, hour and day as events are written, never from raw events, so "
            f"its cost does not grow with traffic. One query covers at most {MAX_BUCKETS:,} buckets and answers at "
            f"most {MAX_COUNTS:,} counts (else a 400 that says how to narrow it). Items are oldest bucket first; "
            "buckets and groups without verifications are left out (they count zero). `group` is the outcome, the "
            "key id or the owner id, null for verifications without a key or owner. Scoping as in `GET /v1/logs`."
        ),
    ),
]
