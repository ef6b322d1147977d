"""The audit log (SPEC A1, A2): ``GET /v1/audit`` with filters."""

from __future__ import annotations

from starlette.responses import Response

from keystile.core.models import AuditFilter
from keystile.schemas import NO_NUL, AuditOut, Page, audit_out
from keystile.server.routing import CURSOR, LIMIT, Call, Operation, Param
from keystile.service.audit import MAX_CURSOR_DIGITS

AUDIT_CURSOR = f"^[0-9]{{1,{MAX_CURSOR_DIGITS}}}$"
"""The ``seq`` of an entry: digits that fit a signed 64-bit integer."""


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
    Operation(
        "GET",
        "/v1/audit",
        list_audit,
        "List audit entries, newest first",
        "Audit",
        "audit.read",
        response=Page[AuditOut],
        query=(
            Param("actor", "string", "Only entries of this actor (a root key id, or `cli`).", NO_NUL),
            Param("action", "string", "Only entries of this action, such as `key.create`.", NO_NUL),
            Param("target", "string", "Only entries about this object id.", NO_NUL),
            Param("since", "date-time", "Only entries at or after this RFC 3339 time."),
            Param("until", "date-time", "Only entries before this RFC 3339 time."),
            Param(CURSOR.name, CURSOR.kind, CURSOR.description, {"pattern": AUDIT_CURSOR}),
            LIMIT,
        ),
        errors=(400, 401, 403),
    ),
]
