"""How a key is shown to people: its state in a word and its fields, for ``keys`` and ``keys reroll``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from keystile.cli._output import fields, ratelimits, when

if TYPE_CHECKING:
    from keystile.schemas import KeyOut


def status(out: KeyOut, now_ms: int) -> str:
    """What verification would say about the key's state, in a word (time-independent checks first, as V2)."""
    from keystile.core.timefmt import from_rfc3339

    if out.revoked_at:
        return "revoked"
    if not out.enabled:
        return "disabled"
    if out.expires_at and from_rfc3339(out.expires_at) <= now_ms:
        return "expired"
    return "active"


def show_key(out: KeyOut) -> None:
    """Print the fields of a key for people, one a line (never the key itself: only its `start`)."""
    credits = "unlimited"
    if out.credits is not None:
        credits = str(out.credits.remaining)
        if out.credits.refill is not None:
            refill_ = out.credits.refill
            on_day = f" on day {refill_.day}" if refill_.day else ""
            credits += f" (refilled to {refill_.amount} {refill_.interval}{on_day})"
    fields(
        [
            ("id", out.id),
            ("api_id", out.api_id),
            ("start", out.start),
            ("name", out.name),
            ("owner_id", out.owner_id),
            ("status", status(out, int(time.time() * 1000))),
            ("permissions", out.permissions),
            ("roles", out.roles),
            ("meta", out.meta),
            ("created_at", when(out.created_at)),
            ("stale", out.stale),
            ("updated_at", when(out.updated_at)),
            ("expires_at", when(out.expires_at)),
            ("revoked_at", when(out.revoked_at)),
            ("last_used_at", when(out.last_used_at)),
            ("credits", credits),
            ("ratelimits", ratelimits(out.ratelimits)),
            ("ip_allowlist", out.ip_allowlist),
            ("rotated_from", out.rotated_from),
            ("rotated_to", out.rotated_to),
        ]
    )
