"""Object ids: a type prefix and 22 base62 characters that sort by creation time.

The first 48 bits are the creation time in milliseconds and the last 80 are random, so a newest-first listing
is an ``ORDER BY id DESC`` and a cursor is simply the last id seen (as in ULID/KSUID).
"""

from __future__ import annotations

import re
import secrets

from keystile.core import base62

ID_LENGTH = 22
MAX_ID_MS = 0xFFFF_FFFF_FFFF
"""The latest time an id carries (48 bits of milliseconds)."""
_ID_RE = re.compile(r"[a-z]{2,5}_[0-9A-Za-z]{1,40}")


def new_id(kind: str, at_ms: int) -> str:
    """A new id such as ``key_0Jk...`` created at ``at_ms`` milliseconds since the epoch."""
    value = ((at_ms & MAX_ID_MS) << 80) | secrets.randbits(80)
    return f"{kind}_{base62.encode(value, ID_LENGTH)}"


def first_id(kind: str, at_ms: int) -> str:
    """The smallest id of ``kind`` created at ``at_ms`` (0 <= at_ms <= :data:`MAX_ID_MS`): ids created then or
    later sort at or above it, those created before below it (a time range as a range of ids)."""
    return f"{kind}_{base62.encode(at_ms << 80, ID_LENGTH)}"


def looks_like_id(value: str, kind: str) -> bool:
    """Whether ``value`` has the shape of an id of ``kind`` (cheap validation of path parameters)."""
    return value.startswith(kind + "_") and _ID_RE.fullmatch(value) is not None
