"""The decision every integration shares: find the key in a request (SPEC V4), verify it, and either return who
holds it or raise the error that becomes the answer.

Answers (problem+json, SPEC S4): 401 ``missing_key`` (``WWW-Authenticate: Bearer``), 401 ``invalid_key`` for an
unknown, revoked, disabled or expired key alike (S2: the answer does not say which), 401
``ambiguous_credentials``, 403 ``ip_not_allowed`` and ``insufficient_permissions``, 429 ``rate_limited`` (with
``Retry-After``) and ``usage_exceeded``, and 503 ``verification_unavailable`` when Keystile cannot be asked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from keystile.core.extract import extract_key
from keystile.core.netaddr import parse_ip
from keystile.core.permissions import Grants, evaluate, parse_query
from keystile.core.timefmt import from_rfc3339
from keystile.errors import Forbidden, KeystileError, RateLimited, StorageError, Unauthenticated
from keystile.integrations._verifiers import KeyVerifier
from keystile.schemas import RateLimitState, VerifyRequest, VerifyResponse

log = logging.getLogger("keystile.integrations")

MISSING_KEY = "this API needs a key: send it as Authorization: Bearer <key>"
INVALID_KEY = "the API key is not valid"
# VerifyRequest.key's limit: a longer string cannot be a key, and a server would refuse the whole request (400).
MAX_KEY_LENGTH = 4096
_INVALID = frozenset({"NOT_FOUND", "REVOKED", "DISABLED", "EXPIRED"})


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """The key a request was let in with, as the handler sees it."""

    key_id: str
    api_id: str
    owner_id: str | None
    name: str | None
    meta: dict[str, Any]
    permissions: tuple[str, ...]
    """Its effective permissions: its own and those of its roles."""
    roles: tuple[str, ...]
    expires_at: str | None
    credits_remaining: int | None
    """Credits left after this request; ``None`` when unlimited."""
    ratelimits: tuple[RateLimitState, ...]

    def allows(self, query: str) -> bool:
        """Whether the key's permissions satisfy a permission query (SPEC V3), such as ``"a AND (b OR c)"``."""
        return evaluate(parse_query(query), Grants(self.permissions))


def verified_key(answer: VerifyResponse) -> VerifiedKey:
    assert answer.key_id is not None, "a VALID answer names its key"
    assert answer.api_id is not None, "and its API"
    return VerifiedKey(
        key_id=answer.key_id,
        api_id=answer.api_id,
        owner_id=answer.owner_id,
        name=answer.name,
        meta=answer.meta or {},
        permissions=tuple(answer.permissions or ()),
        roles=tuple(answer.roles or ()),
        expires_at=answer.expires_at,
        credits_remaining=answer.credits.remaining if answer.credits is not None else None,
        ratelimits=tuple(answer.ratelimits or ()),
    )


def rejection(answer: VerifyResponse, now: float) -> KeystileError:
    """The error answering a key that did not verify (``answer.valid`` is false) at ``now`` (epoch seconds)."""
    code = answer.code
    if code in _INVALID:
        return Unauthenticated(INVALID_KEY, code="invalid_key")
    if code == "FORBIDDEN":
        return Forbidden("this key may not be used from this address", code="ip_not_allowed")
    if code == "INSUFFICIENT_PERMISSIONS":
        return Forbidden("this key lacks a permission this route needs", code="insufficient_permissions")
    if code == "RATE_LIMITED":
        retry_after = _retry_after(answer.ratelimits or [], now)
        return RateLimited("too many requests with this key; retry later", retry_after=retry_after)
    return RateLimited("this key has no credits left", code="usage_exceeded")


def _retry_after(limits: Iterable[RateLimitState], now: float) -> int:
    """Whole seconds until every exhausted limit has capacity again (at least 1)."""
    resets = [from_rfc3339(limit.reset_at) / 1000 for limit in limits if limit.remaining == 0 and limit.reset_at]
    return max(1, math.ceil(max(resets, default=now) - now))


async def authenticate(
    verifier: KeyVerifier,
    headers: Iterable[tuple[bytes, bytes]],
    query_string: bytes,
    client_ip: str | None,
    *,
    permissions: str | None = None,
    api_id: str | None = None,
) -> VerifiedKey:
    """The verified key of a request, or raise the :class:`KeystileError` to answer it with.

    ``headers`` are ASGI-style (lower-case names); ``client_ip`` is checked against allowlists when it is an
    address. ``permissions`` is a permission query the key must satisfy; ``api_id`` accepts only keys of that API.
    """
    found = extract_key(headers, query_string)
    if found is None:
        raise Unauthenticated(MISSING_KEY, code="missing_key")
    if len(found[0]) > MAX_KEY_LENGTH:
        raise Unauthenticated(INVALID_KEY, code="invalid_key")
    ip = client_ip if client_ip is not None and parse_ip(client_ip) is not None else None
    request = VerifyRequest(key=found[0], api_id=api_id, permissions=permissions, ip=ip)
    try:
        answer = await verifier.verify(request)
    except KeystileError as exc:
        # The application's own setup failed (server down, bad root key or query): never the caller's fault.
        log.error("key verification failed: %s", exc)
        raise StorageError("key verification is unavailable; try again later", code="verification_unavailable") from exc
    if not answer.valid:
        raise rejection(answer, verifier.now())
    return verified_key(answer)


def require(key: VerifiedKey, permissions: str | None) -> VerifiedKey:
    """``key`` when it satisfies ``permissions`` (a key verified earlier, by a middleware); raises Forbidden."""
    if permissions is not None and not key.allows(permissions):
        raise Forbidden("this key lacks a permission this route needs", code="insufficient_permissions")
    return key
