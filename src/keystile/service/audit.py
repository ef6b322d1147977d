"""Reading the audit log (SPEC A1) and verifying its hash chain (SPEC A2); entries are written by the services,
in their transactions."""

from __future__ import annotations

from collections.abc import Sequence

from keystile.core.auditchain import Anchor, ChainCheck, ChainReport, check_anchor, check_head
from keystile.core.models import MAX_AUDIT_CURSOR_DIGITS, AuditEntry, AuditFilter, Page
from keystile.errors import InvalidInput
from keystile.service.authz import Principal
from keystile.service.context import Context, page_limit, paged
from keystile.service.validate import check_json

VERIFY_PAGE = 1000
"""Entries a verification reads at a time: memory stays flat however long the log."""


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

    async def head(self, principal: Principal) -> AuditEntry | None:
        """The newest entry (whose ``seq`` and ``hash`` are the chain's head), ``None`` before the first; needs
        ``audit.read``."""
        principal.require("audit.read")
        newest = await self._ctx.storage.list_audit(AuditFilter(), before=None, limit=1)
        return newest[0] if newest else None

    async def verify(
        self, principal: Principal, *, start: int = 1, anchors: Sequence[Anchor] = (), page: int = VERIFY_PAGE
    ) -> ChainReport:
        """Walk the chain from ``start`` (trusting that entry's ``prev_hash`` when above 1, unless an anchor is the
        entry before it) to its end, ``page``
        entries at a time, and check it against the head the log records and against ``anchors`` (heads recorded
        elsewhere); the report names the first problem. Needs ``audit.read``; raises InvalidInput for a ``start``
        below 1."""
        principal.require("audit.read")
        if start < 1:
            raise InvalidInput("the chain starts at seq 1", code="invalid_seq", field="from")
        storage = self._ctx.storage
        # The head first: entries appended during the walk are walked too, and cannot look like a lost tail.
        head = await storage.audit_head()
        # An anchored head just before the start vouches for the first entry's link.
        check = ChainCheck(start, next((a.hash for a in anchors if a.seq == start - 1), None))
        problem = None
        while problem is None:
            entries = await storage.audit_chain(from_seq=check.expected, limit=page)
            for entry in entries:
                problem = check.feed(entry)
                if problem is not None:
                    break
            if len(entries) < page:
                break
        if problem is None:
            problem = check_head(head, check.last, start)
        end = check.last.seq if check.last is not None and check.last.seq is not None else start - 1
        for anchor in anchors:
            if problem is not None:
                break
            found = check.last if check.last is not None and anchor.seq == end else None
            found = found or await storage.audit_entry(anchor.seq)
            problem = check_anchor(anchor, found, end)
        return ChainReport(start, check.checked, check.last, problem, tuple(anchors))
