"""Reading the audit log (SPEC A1); entries are written by the services, in their transactions."""

from __future__ import annotations

from keystile.core.models import MAX_AUDIT_CURSOR_DIGITS, AuditEntry, AuditFilter, Page
from keystile.errors import InvalidInput
from keystile.service.authz import Principal
from keystile.service.context import Context, page_limit, paged
from keystile.service.validate import check_json


class AuditService:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def list(
        self, principal: Principal, where: AuditFilter, *, cursor: str | None, limit: int | None
    ) -> Page[AuditEntry]:
        """Entries newest first; needs ``audit.read``. The cursor is the ``seq`` of the last entry seen."""
        principal.require("audit.read")
        for field in ("actor", "action", "target"):
            check_json(getattr(where, field), field)
        size = page_limit(limit)
        before = None
        if cursor is not None:
            # ASCII digits that fit a 64-bit integer: "²".isdigit() is true and int() refuses it, and a longer
            # number fails in the database.
            if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= MAX_AUDIT_CURSOR_DIGITS):
                raise InvalidInput("not a cursor of this list", code="invalid_cursor", field="cursor")
            before = int(cursor)
        items = await self._ctx.storage.list_audit(where, before=before, limit=size + 1)
        return paged(items, size, lambda entry: str(entry.seq))
