"""Object ids: a type prefix and 22 base62 characters that sort by creation time; and which request ids a client
may choose.

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
MAX_REQUEST_ID = 128
_REQUEST_ID_RE = re.compile(rf"[A-Za-z0-9._\-]{{1,{MAX_REQUEST_ID}}}")
# How every key in Keystile's shape ends (SPEC K2): "_", then 32 random and 6 check characters in base62.
_KEY_TAIL_RE = re.compile(r"_[0-9A-Za-z]{38}")


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


def accepted_request_id(value: str, key: str | None = None) -> str | None:
    """``value`` when a client may choose it as its request id, else ``None`` (the caller makes one up).

    The one rule for every path where a request id goes (answers, problem bodies, log lines, stored events): 1 to
    :data:`MAX_REQUEST_ID` of ``[A-Za-z0-9._-]``; nothing in it shaped like a Keystile key (an underscore and 38
    letters or digits, as ``{prefix}_{random}{check}`` ends), so a key pasted there is never stored or logged;
    and not containing ``key``, the key the same request carries, which may be an imported key of any shape.
    """
    if _REQUEST_ID_RE.fullmatch(value) is None or carries_key(value, key):
        return None
    return value


def carries_key(value: str, key: str | None = None) -> bool:
    """Whether ``value`` holds something shaped like a Keystile key (an underscore and 38 letters or digits, as
    ``{prefix}_{random}{check}`` ends), or ``key`` itself (which may be an imported key of any shape): a key pasted
    into a field that is stored or logged (a request id, an API id, a tag), never to be written there."""
    return _KEY_TAIL_RE.search(value) is not None or bool(key and key in value)
