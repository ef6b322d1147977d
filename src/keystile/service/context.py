"""What every service shares: storage, clock, change bus, verifier, and the audit helper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from keystile.core.clock import Clock, now_ms
from keystile.core.ids import looks_like_id, new_id
from keystile.core.models import AuditEntry, Page
from keystile.core.ports import Change, ChangeBus, Storage, Transaction
from keystile.core.verify import Verifier
from keystile.errors import InvalidInput, NotFound
from keystile.service.authz import Actor

T = TypeVar("T")
DEFAULT_PAGE = 50
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Context:
    storage: Storage
    clock: Clock
    bus: ChangeBus
    verifier: Verifier

    def now(self) -> int:
        return now_ms(self.clock)

    def entry(self, actor: Actor, action: str, target: str, changes: dict[str, Any], at_ms: int) -> AuditEntry:
        """An audit entry of ``actor`` doing ``action`` to ``target`` (never pass a key in ``changes``)."""
        return AuditEntry(
            id=new_id("aud", at_ms),
            ts=at_ms,
            actor=actor.id,
            action=action,
            target=target,
            ip=actor.ip,
            # U+0000 would make PostgreSQL refuse the entry, and with it the change it records.
            user_agent=actor.user_agent[:512].replace("\x00", "\ufffd") if actor.user_agent else None,
            changes=changes,
        )

    async def audit(
        self, tx: Transaction, actor: Actor, action: str, target: str, changes: dict[str, Any], at_ms: int
    ) -> None:
        await tx.append_audit(self.entry(actor, action, target, changes, at_ms))

    async def publish(self, changes: Sequence[Change]) -> None:
        if changes:
            await self.bus.publish(changes)


def page_limit(limit: int | None) -> int:
    """A page size within the bounds of SPEC H (default 50, at most 1,000)."""
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", code="invalid_limit", field="limit")
    return limit


def paged(items: Sequence[T], size: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """A page from ``size + 1`` fetched items: the extra one only says that another page exists."""
    page = list(items[:size])
    return Page(page, cursor_of(page[-1]) if len(items) > size else None)


def not_found(what: str, ref: str, kind: str, code: str) -> NotFound:
    """ "no key key_..." naming the caller's reference only when it has the shape of an id of ``kind``.

    A client that puts a key where an id belongs (``GET /v1/keys/ks_...``) must not get it back in the answer,
    nor in anything that logs answers.
    """
    shown = ref if looks_like_id(ref, kind) else "with that id"
    return NotFound(f"no {what} {shown}", code=code)


def key_change(digest: bytes) -> Change:
    return Change("key", digest.hex())


def api_change(api_id: str) -> Change:
    return Change("api", api_id)
