"""Leaked keys (SPEC S3): what a found key's digest says about the key, and revoking it as a reported leak.

Both ``keystile scan`` and ``POST /v1/leaks`` (GitHub's secret scanning partner program) end here: they know a
key only by its SHA-256 digest, which is how Keystile stores it. A report is audited as ``key.leak_reported``
with where the key was seen, never the key, even when the key was revoked already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from keystile.core.models import Key
from keystile.service.authz import Actor
from keystile.service.context import Context
from keystile.service.keys import LEAK_ACTION, KeyService

Status = Literal["active", "disabled", "expired", "revoked", "not_found"]


@dataclass(frozen=True, slots=True)
class Holder:
    """What the deployment knows about a leaked key: its record (``None`` when no key has the digest) and its
    state, in a word."""

    key: Key | None
    status: Status


class LeakService:
    def __init__(self, ctx: Context, keys: KeyService) -> None:
        self._ctx = ctx
        self._keys = keys

    async def look_up(self, digest: bytes) -> Holder:
        """The key whose SHA-256 is ``digest`` (root keys included), and its state now."""
        bundle = await self._ctx.storage.load_for_verify(digest)
        if bundle is None:
            return Holder(None, "not_found")
        return Holder(bundle.key, self.status(bundle.key))

    def status(self, key: Key) -> Status:
        """Revoked, disabled or expired (in the order verification checks them), else active."""
        if key.revoked_at is not None:
            return "revoked"
        if not key.enabled:
            return "disabled"
        if key.is_expired(self._ctx.now()):
            return "expired"
        return "active"

    async def report(self, actor: Actor, digest: bytes, details: dict[str, Any]) -> Holder:
        """Revoke the key whose SHA-256 is ``digest`` as leaked, auditing ``details`` (where it was seen).

        A disabled or expired key is revoked too: either could be brought back. Returns what the key was before
        (``status`` ``not_found`` and nothing done when no key has the digest).
        """
        found = await self.look_up(digest)
        if found.key is not None:
            await self._keys.mark_revoked(actor, found.key.id, LEAK_ACTION, details)
        return found
