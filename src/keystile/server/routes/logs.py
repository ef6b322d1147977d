"""The verification log (SPEC O2): ``GET /v1/logs`` with filters and cursor paging."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from keystile.core.models import EventFilter
from keystile.core.verify import ALL_CODES
from keystile.schemas import NO_NUL, EventOut, Page, event_out
from keystile.server.routing import CURSOR, LIMIT, Call, Operation, Param


def event_filter(params: dict[str, Any]) -> EventFilter:
    """The event filters of a query string (shared with analytics)."""
    return EventFilter(
        api_id=params.get("api_id"),
        key_id=params.get("key_id"),
        owner_id=params.get("owner_id"),
        outcome=params.get("outcome"),
        since=params.get("since"),
        until=params.get("until"),
    )


async def list_logs(call: Call) -> Response:
    params = call.params
    page = await call.ks.analytics.logs(
        call.actor.principal, event_filter(params), cursor=params.get("cursor"), limit=params.get("limit")
    )
    return call.json(Page([event_out(event) for event in page.items], page.next_cursor))


_ANY_ID = {"minLength": 1, **NO_NUL}
FILTERS = (
    Param("api_id", "string", "Only verifications of this API.", _ANY_ID),
    Param("key_id", "string", "Only verifications of this key.", _ANY_ID),
    Param("owner_id", "string", "Only verifications of keys of this owner.", _ANY_ID),
    Param("outcome", "string", "Only verifications with this code.", {"enum": list(ALL_CODES)}),
)
OPERATIONS = [
    Operation(
        "GET",
        "/v1/logs",
        list_logs,
        "List verification events, newest first, with filters",
        "Analytics",
        "analytics.read",
        response=Page[EventOut],
        query=(
            *FILTERS,
            Param("since", "date-time", "Only verifications at or after this RFC 3339 time."),
            Param("until", "date-time", "Only verifications before this RFC 3339 time."),
            Param(CURSOR.name, CURSOR.kind, CURSOR.description, {"pattern": "^evt_[0-9A-Za-z]{1,40}$"}),
            LIMIT,
        ),
        description=(
            "A root key with `analytics.read` for some APIs only sees their events; naming another API "
            "(`api_not_found`) or a key of another API (`key_not_found`) answers 404. Events are written in "
            "batches off the verification path, so the newest may appear a moment after their verification."
        ),
    ),
]
