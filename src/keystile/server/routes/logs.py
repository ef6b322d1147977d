"""The verification log (SPEC O2): ``GET /v1/logs`` with filters and cursor paging."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from keystile.core.models import EventFilter
from keystile.operations import LIST_LOGS
from keystile.schemas import Page, event_out
from keystile.server.routing import Call, Operation


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


OPERATIONS = [
    Operation(
        LIST_LOGS,
        list_logs,
        "List verification events, newest first, with filters",
        "Analytics",
        "analytics.read",
        description=(
            "A root key with `analytics.read` for some APIs only sees their events; naming another API "
            "(`api_not_found`) or a key of another API (`key_not_found`) answers 404. Events are written in "
            "batches off the verification path, so the newest may appear a moment after their verification."
        ),
    ),
]
