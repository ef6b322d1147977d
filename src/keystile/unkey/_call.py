"""One request to an Unkey-compatible route, as its handler sees it, and what a handler answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from keystile.core.models import Identity
from keystile.schemas import decode
from keystile.service import Actor, Keystile

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer:
    """The ``data`` of an answer and, for lists, the ``pagination`` (next cursor, ``None`` on the last page)."""

    data: Any
    paged: bool = False
    cursor: str | None = None


class Call:
    """The services, the authenticated caller, the request id and the raw body of one request."""

    __slots__ = ("actor", "body", "ks", "request_id")

    def __init__(self, ks: Keystile, actor: Actor, request_id: str, body: bytes) -> None:
        self.ks = ks
        self.actor = actor
        self.request_id = request_id
        self.body = body

    def decode(self, schema: type[T]) -> T:
        """The body validated against ``schema``; raises InvalidInput naming the field at fault."""
        return decode(self.body or b"{}", schema)

    async def owner_identity(self, owner_id: str | None) -> Identity | None:
        """The identity of a key's owner, for display with the key (no permission of its own: whoever may see the
        key sees whom it belongs to, as in Unkey)."""
        if owner_id is None:
            return None
        return await self.ks.storage.get_identity(owner_id)


Handler = Callable[[Call], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One ``/v2/<namespace>.<operation>`` route: its handler, and the Unkey error type of a 404 that names no
    object (a root key scoped to other APIs is told the operation's object does not exist)."""

    handler: Handler
    not_found: str = "unkey/data/key_not_found"
