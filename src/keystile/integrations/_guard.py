"""The decision every integration shares: find the key in a request (SPEC V4), verify it, and either return who
holds it or raise the error that becomes the answer.

Refusals are the one answer of :mod:`keystile.http.refusals` (problem+json, the same as ``keystile proxy``'s),
and 503 ``verification_unavailable`` when Keystile cannot be asked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from keystile.core.netaddr import parse_ip
from keystile.core.permissions import Grants, evaluate, parse_query
from keystile.core.ratelimit import LimitState
from keystile.core.timefmt import from_rfc3339, to_rfc3339
from keystile.core.tokens import TokenGrant, looks_like_token
from keystile.core.verify import Code
from keystile.errors import KeystileError, StorageError
from keystile.http.answers import room_after_ms, whole_seconds
from keystile.http.credentials import extract_key
from keystile.http.refusals import refusal
from keystile.integrations._verifiers import KeyVerifier
from keystile.schemas import RateLimitState, VerifyRequest, VerifyResponse

log = logging.getLogger("keystile.integrations")

# VerifyRequest.key's limit: a longer string cannot be a key, and a server would refuse the whole request (400).
MAX_KEY_LENGTH = 4096


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
    token: bool = False
    """Whether the request came with an API token (issued from the key) rather than the key itself. For a token,
    ``permissions`` is its scope, ``expires_at`` its expiry, and ``name``, ``meta``, credits and rate limits are
    not known (nothing is spent)."""
    subject: str | None = None
    """A token's ``sub``: the key's owner id, else the key's id."""
    token_id: str | None = None
    """A token's ``jti``."""

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


class TokenChecker(Protocol):
    """What checks tokens for an integration (a verifier's ``tokens``): what a token grants, or raise the refusal
    to answer it with."""

    async def check_token(self, token: str, *, permissions: str | None, api_id: str | None) -> TokenGrant: ...


def token_identity(grant: TokenGrant) -> VerifiedKey:
    """What the handler sees of a verified token (made once per token): its key's id, API and owner, its scope."""
    identity = grant.extra
    if isinstance(identity, VerifiedKey):
        return identity
    try:
        expires_at: str | None = to_rfc3339(grant.expires_at * 1000)
    except (ValueError, OverflowError):
        expires_at = None
    identity = grant.extra = VerifiedKey(
        key_id=grant.key_id,
        api_id=grant.api_id,
        owner_id=grant.owner_id,
        name=None,
        meta={},
        permissions=grant.scope,
        roles=(),
        expires_at=expires_at,
        credits_remaining=None,
        ratelimits=(),
        token=True,
        subject=grant.subject,
        token_id=grant.jti,
    )
    return identity


def rejection(answer: VerifyResponse, now: float) -> KeystileError:
    """The error answering a key that did not verify (``answer.valid`` is false) at ``now`` (epoch seconds): the
    one answer of :mod:`keystile.http.refusals`."""
    retry_after = None
    if answer.code == Code.RATE_LIMITED:
        retry_after = whole_seconds(room_after_ms(_states(answer.ratelimits or ()), now * 1000, {}))
    # A VerifyResponse does not say when credits are refilled: no Retry-After rather than a wrong one.
    return refusal(answer.code, retry_after)


def _states(limits: Iterable[RateLimitState]) -> list[LimitState]:
    """The wire's limit states (``reset_at`` in RFC 3339) as the verifier reports them (epoch milliseconds)."""
    return [LimitState(s.name, s.limit, s.remaining, from_rfc3339(s.reset_at)) for s in limits if s.reset_at]


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
    address. A credential with a JWT's shape is an API token, checked by the verifier's ``tokens`` (when it has
    one: else it is looked up as a key, and not found). ``permissions`` is a permission query the key must
    satisfy; ``api_id`` accepts only keys of that API.
    """
    found = extract_key(headers, query_string)
    if found is None:
        raise refusal("missing_key")
    tokens: TokenChecker | None = getattr(verifier, "tokens", None)
    if tokens is not None and looks_like_token(found[0]):
        return token_identity(await tokens.check_token(found[0], permissions=permissions, api_id=api_id))
    if len(found[0]) > MAX_KEY_LENGTH:
        raise refusal(Code.NOT_FOUND)
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
        raise refusal(Code.INSUFFICIENT_PERMISSIONS)
    return key
