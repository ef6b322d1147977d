"""What a verification result means over HTTP, decided once for every shell that answers one: forward auth
(``/v1/auth``, SPEC V5: everything in headers, no body), ``keystile proxy`` (SPEC I4: problem+json) and the
integrations (SPEC I2: problem+json, S2's alike ``invalid_key``). The shells only present these decisions:

- the status of each SPEC V2 code: 200 ``VALID``; 401 ``NOT_FOUND``, ``REVOKED``, ``DISABLED``, ``EXPIRED``;
  403 ``FORBIDDEN``, ``INSUFFICIENT_PERMISSIONS``; 429 ``RATE_LIMITED``, ``USAGE_EXCEEDED``;
- ``Retry-After`` of a 429, in whole seconds and always at least 1: when an exhausted rate limit has room for
  one more request, or when credits are refilled next (:data:`NO_REFILL_RETRY_S` when they never are, since
  V5 promises every 429 a ``Retry-After``: only someone adding credits helps, and a minute is a fair poll);
- ``RateLimit-Limit/-Remaining/-Reset`` of the tightest limit (IETF draft-ietf-httpapi-ratelimit-headers:
  ``Reset`` in delta seconds until the bucket is full again);
- the identity headers of a verified key: ``X-Keystile-Key-Id``, ``-Api-Id`` and ``-Owner-Id``, the last one
  always present (empty without an owner: Caddy 2.6 copies its own placeholder otherwise) and percent-encoded
  beyond printable ASCII (header values are ASCII on the wire; an owner id is free text).

Pure: it imports the standard library and :mod:`keystile.core` only, so every shell can afford it, and it lives
in ``server`` because statuses and header names are HTTP (``core`` knows nothing of HTTP).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from keystile.core.credits import next_refill_moment
from keystile.core.models import RateLimit
from keystile.core.ratelimit import LimitState
from keystile.core.tokens import TokenGrant
from keystile.core.verify import CachedKey, Code, encoded_of

HeaderList = list[tuple[bytes, bytes]]

STATUS: Mapping[str, int] = {
    Code.VALID: 200,
    Code.NOT_FOUND: 401,
    Code.REVOKED: 401,
    Code.DISABLED: 401,
    Code.EXPIRED: 401,
    Code.FORBIDDEN: 403,
    Code.INSUFFICIENT_PERMISSIONS: 403,
    Code.RATE_LIMITED: 429,
    Code.USAGE_EXCEEDED: 429,
}
"""The HTTP status of every SPEC V2 code (a plain dict lookup: forward auth's hot path reads it)."""

NO_REFILL_RETRY_S = 60
"""``Retry-After`` of a key out of credits that are never refilled."""

_OWNER_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")


def whole_seconds(wait_ms: float) -> int:
    """A wait in milliseconds as ``Retry-After`` says it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait_ms / 1000))


def room_after_ms(states: Iterable[LimitState], now_ms: float, limits: Mapping[str, tuple[RateLimit, str]]) -> float:
    """Milliseconds until every exhausted limit of ``states`` has room for one more request (0: none is).

    GCRA (SPEC L1): a bucket is full at ``reset_at`` and regains one request every ``duration / limit``, so it
    has room once it is within ``limit - 1`` of those intervals of being full. ``limits`` are the key's compiled
    limits by name (``CachedKey.limits``); a limit not among them (an answer from another process, as the
    integrations get) takes the longest that interval can be, ``(reset_at - now) / limit``, so the wait is
    never too short.
    """
    wait = 0.0
    for state in states:
        if state.remaining > 0 or state.limit <= 0:
            continue
        until_full = state.reset_at - now_ms
        found = limits.get(state.name)
        if found is None:
            room = until_full / state.limit
        else:
            room = until_full - (state.limit - 1) * found[0].duration_ms / state.limit
        wait = max(wait, room)
    return wait


def retry_after_s(code: str, entry: CachedKey | None, states: Sequence[LimitState], now_ms: float) -> int:
    """``Retry-After`` (whole seconds, at least 1) of a request refused with ``code`` (``RATE_LIMITED`` or
    ``USAGE_EXCEEDED``) at ``now_ms`` (epoch milliseconds); ``states`` are the limits' states it was refused
    with (``VerifyResult.spent.ratelimits``)."""
    if code == Code.USAGE_EXCEEDED:
        credits = entry.credits if entry is not None else None
        if credits is None or credits.refill is None:
            return NO_REFILL_RETRY_S
        return whole_seconds(next_refill_moment(credits.refill, int(now_ms)) - now_ms)
    return whole_seconds(room_after_ms(states, now_ms, entry.limits if entry is not None else {}))


def ratelimit_headers(states: Sequence[LimitState], now_ms: float) -> HeaderList:
    """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (seconds until the bucket is full again) of the limit
    with the least capacity left, the later reset breaking ties; none when no limit applied."""
    if not states:
        return []
    tightest = min(states, key=lambda s: (s.remaining, -s.reset_at))
    reset = max(0, math.ceil((tightest.reset_at - now_ms) / 1000))
    return [
        (b"ratelimit-limit", b"%d" % tightest.limit),
        (b"ratelimit-remaining", b"%d" % tightest.remaining),
        (b"ratelimit-reset", b"%d" % reset),
    ]


def owner_header(owner_id: str | None) -> bytes:
    """``X-Keystile-Owner-Id``'s value: empty without an owner; characters beyond printable ASCII, and ``%``,
    percent-encoded as UTF-8 (so CR and LF cannot split the header, and nothing is lost)."""
    return quote(owner_id or "", safe=_OWNER_SAFE).encode("ascii")


def identity_headers(entry: CachedKey) -> HeaderList:
    """``X-Keystile-Key-Id``, ``-Api-Id`` and ``-Owner-Id`` of a verified key (their values encoded once per cache
    entry)."""
    encoded = entry.encoded
    if encoded is None:
        encoded = encoded_of(entry)
    owner = encoded.get("owner")
    if owner is None:
        encoded["id"], encoded["api"] = entry.key_id.encode(), entry.api_id.encode()
        owner = encoded["owner"] = owner_header(entry.owner_id)
    return [
        (b"x-keystile-key-id", encoded["id"]),
        (b"x-keystile-api-id", encoded["api"]),
        (b"x-keystile-owner-id", owner),
    ]


def token_identity_headers(grant: TokenGrant) -> HeaderList:
    """The identity headers of a verified API token: those of the key that issued it (``X-Keystile-Owner-Id``
    from its ``sub``), and ``X-Keystile-Token: true``."""
    return [
        (b"x-keystile-key-id", grant.key_id.encode("latin-1", "replace")),
        (b"x-keystile-api-id", grant.api_id.encode("latin-1", "replace")),
        (b"x-keystile-owner-id", owner_header(grant.owner_id)),
        (b"x-keystile-token", b"true"),
    ]
