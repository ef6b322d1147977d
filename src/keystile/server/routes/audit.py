"""The audit log (SPEC A1, A2): ``GET /v1/audit`` with filters."""

from __future__ import annotations

from starlette.responses import Response

from keystile.core.models import AuditFilter
from keystile.operations import LIST_AUDIT
from keystile.schemas import Page, audit_out
from keystile.server.routing import Call, Operation


async def list_audit(call: Call) -> Response:
    params = call.params
    where = AuditFilter(
        actor=params.get("actor"),
        action=params.get("action"),
        target=params.get("target"),
        since=params.get("since"),
        until=params.get("until"),
    )
    page = await call.ks.audit.list(call.actor.principal, where, cursor=params.get("cursor"), limit=params.get("limit"))
    return call.json(Page([audit_out(entry) for entry in page.items], page.next_cursor))


OPERATIONS = [
    Operation(LIST_AUDIT, list_audit, "List audit entries, newest first", "Audit", "audit.read", errors=(400, 401, 403))
]
