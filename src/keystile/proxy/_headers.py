"""What the proxy changes in the messages it passes on (SPEC I4).

Towards the upstream: the key is removed from every channel it can travel by (SPEC V4: ``Authorization: Bearer``,
``X-API-Key``, the ``api_key`` query parameter), so the upstream never sees or logs it; hop-by-hop headers and
anything a client sent as ``X-Keystile-*`` or
``RateLimit-*`` go too (the upstream must be able to believe those); then the caller's
identity, its rate-limit state and ``X-Forwarded-*`` are added. Back to the client: hop-by-hop headers are removed
and the rate-limit state is added unless the upstream set its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from urllib.parse import unquote_plus

from keystile.core.credits import next_refill_moment
from keystile.core.extract import QUERY_PARAMETER
from keystile.core.verify import CachedKey, Code, VerifyResult
from keystile.server.http import Headers

HeaderList = list[tuple[bytes, bytes]]

# RFC 9110 7.6.1, plus the proxy ones everybody strips; "host" is the upstream's, set by the client library.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# "expect": this side answered any 100-continue already; the body follows whatever the upstream says.
_REQUEST_DROPS = HOP_BY_HOP | {
    b"host",
    b"expect",
    b"x-api-key",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",  # sent on as the proxy read it: the client's when it is sane, else a new one
}
_IDENTITY_PREFIX = b"x-keystile-"
_RATELIMIT_PREFIX = b"ratelimit-"
NO_REFILL_RETRY_S = 60


def _connection_tokens(headers: Headers) -> set[bytes]:
    """Header names a ``Connection`` header declares hop-by-hop (RFC 9110 7.6.1)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return named


def _is_bearer(value: bytes) -> bool:
    return value[:7].lower() == b"bearer "


def upstream_headers(headers: Headers, added: Iterable[tuple[bytes, bytes]]) -> HeaderList:
    """The client's request headers as the upstream gets them: without the key, hop-by-hop headers, identity
    claims or forwarding headers the client wrote itself; with ``added``."""
    declared = _connection_tokens(headers)
    kept = [
        (name, value)
        for name, value in headers
        if name not in _REQUEST_DROPS
        and name not in declared
        and not name.startswith((_IDENTITY_PREFIX, _RATELIMIT_PREFIX))
        # Another scheme (Basic, a signature) is the upstream's business; only a bearer token is a key here.
        and not (name == b"authorization" and _is_bearer(value))
    ]
    kept.extend(added)
    return kept


def strip_key_parameter(query_string: bytes) -> bytes:
    """The query string without ``api_key`` parameters (however their name is percent-encoded); every other byte
    of it is kept as sent."""
    if not query_string:
        return query_string
    kept = [
        part
        for part in query_string.split(b"&")
        if unquote_plus(part.partition(b"=")[0].decode("latin-1")) != QUERY_PARAMETER
    ]
    return b"&".join(kept)


def identity_headers(result: VerifyResult) -> HeaderList:
    """``X-Keystile-Key-Id``, ``-Owner-Id`` (when the key has an owner) and ``-Api-Id`` of a verified key."""
    entry = result.entry
    if entry is None:
        return []
    key = entry.key
    found = [(b"x-keystile-key-id", key.id.encode()), (b"x-keystile-api-id", key.api_id.encode())]
    if key.owner_id is not None:
        found.append((b"x-keystile-owner-id", _header_safe(key.owner_id)))
    return found


def _header_safe(text: str) -> bytes:
    # An owner id is free text: keep it on one line, and in latin-1 as HTTP/1.1 header values are.
    return text.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace")


def ratelimit_headers(result: VerifyResult, now_ms: float) -> HeaderList:
    """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (seconds until the bucket is full again) of the limit
    with the least capacity left (IETF draft-ietf-httpapi-ratelimit-headers); none when no limit applied."""
    spent = result.spent
    if spent is None or not spent.ratelimits:
        return []
    tightest = min(spent.ratelimits, key=lambda state: (state.remaining, -state.reset_at))
    reset_s = max(0, math.ceil((tightest.reset_at - now_ms) / 1000))
    return [
        (b"ratelimit-limit", b"%d" % tightest.limit),
        (b"ratelimit-remaining", b"%d" % tightest.remaining),
        (b"ratelimit-reset", b"%d" % reset_s),
    ]


def retry_after_s(result: VerifyResult, now_ms: float) -> int:
    """Seconds until a refused request could pass: when an exhausted limit has room for one more request, or,
    out of credits, when they are refilled (a minute when they never are: only someone adding credits helps)."""
    entry, spent = result.entry, result.spent
    wait_ms = 1000.0
    if result.code == Code.USAGE_EXCEEDED:
        credits = entry.credits if entry is not None else None
        if credits is None or credits.refill is None:
            return NO_REFILL_RETRY_S
        return max(1, math.ceil((next_refill_moment(credits.refill, int(now_ms)) - now_ms) / 1000))
    if entry is not None and spent is not None:
        waits = [_next_room_ms(entry, state.name, state.limit, state.reset_at, now_ms) for state in spent.ratelimits]
        waits = [wait for wait in waits if wait > 0]
        if waits:
            wait_ms = max(waits)
    return max(1, math.ceil(wait_ms / 1000))


def _next_room_ms(entry: CachedKey, name: str, limit: int, reset_at: float, now_ms: float) -> float:
    # GCRA: the bucket is full at reset_at and regains one request every duration / limit, so it has room for one
    # once it is within limit - 1 of those intervals of being full.
    found = entry.limits.get(name)
    if found is None or limit <= 0:
        return reset_at - now_ms
    interval = found[0].duration_ms / limit
    return reset_at - now_ms - (limit - 1) * interval


def response_headers(headers: Iterable[tuple[bytes, bytes]], added: HeaderList) -> HeaderList:
    """The upstream's response headers as the client gets them: without hop-by-hop ones; with ``added`` unless
    the upstream sent a header of the same name."""
    raw = list(headers)
    declared = _connection_tokens(raw)
    kept = [(name, value) for name, value in raw if name not in HOP_BY_HOP and name not in declared]
    present = {name for name, _ in kept}
    kept.extend((name, value) for name, value in added if name not in present)
    return kept
