"""What a verified API token grants (SPEC T1, T3), shared by the in-process checks (forward auth, the proxy) and
the integrations' offline checks (SPEC I2): pure, no cryptography here.

A credential is taken for a token when it has a JWT's shape (:func:`looks_like_token`: three base64url segments
separated by dots). Keys never contain a dot (``prefix_body``, see :mod:`keystile.core.keys`), so the two cannot
be mistaken for each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from keystile.core.permissions import Grants, evaluate, parse_query

_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
MAX_TOKEN_LENGTH = 8192
"""Longer than any token Keystile signs (a hundred permissions fit in well under 4 KiB)."""
_MEMO_LIMIT = 64


def looks_like_token(credential: str) -> bool:
    """Whether ``credential`` has a JWT's shape (a token to check as such, never a key to look up)."""
    return "." in credential and len(credential) <= MAX_TOKEN_LENGTH and _SHAPE.fullmatch(credential) is not None


class TokenGrant:
    """The identity and permissions a verified token carries, compiled once: its ``scope`` as :class:`Grants` and
    the results of permission queries memoised per query string (as a cached key's are)."""

    __slots__ = (
        "api_id",
        "expires_at",
        "extra",
        "grants",
        "issued_at",
        "jti",
        "key_id",
        "kid",
        "memo",
        "owner_id",
        "scope",
        "subject",
    )

    def __init__(
        self,
        key_id: str,
        api_id: str,
        subject: str,
        scope: tuple[str, ...],
        issued_at: int,
        expires_at: int,
        jti: str | None,
        kid: str | None,
    ) -> None:
        self.key_id = key_id
        self.api_id = api_id
        self.subject = subject
        self.owner_id = subject if subject != key_id else None
        """The key's owner: ``sub`` names it, unless the key has none (then ``sub`` is the key's id)."""
        self.scope = scope
        self.grants = Grants(scope)
        self.issued_at = issued_at
        self.expires_at = expires_at
        """``exp``, in seconds since the epoch."""
        self.jti = jti
        self.kid = kid
        self.memo: dict[str, bool] = {}
        self.extra: Any = None
        """A slot where an edge keeps what it derives once per token (the integrations: the handler's view)."""

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], kid: str | None) -> TokenGrant | None:
        """The grant of a token's (signature-checked) claims; ``None`` when a claim Keystile signs is missing or
        of the wrong type (then it is not a token of Keystile's)."""
        key_id, api_id, sub = claims.get("key_id"), claims.get("api_id"), claims.get("sub")
        scope, iat, exp, jti = claims.get("scope", ""), claims.get("iat"), claims.get("exp"), claims.get("jti")
        if not (isinstance(key_id, str) and isinstance(api_id, str) and isinstance(scope, str)):
            return None
        if not (isinstance(iat, int) and isinstance(exp, int)) or isinstance(iat, bool) or isinstance(exp, bool):
            return None
        if jti is not None and not isinstance(jti, str):
            return None
        subject = sub if isinstance(sub, str) and sub else key_id
        return cls(key_id, api_id, subject, tuple(scope.split()), iat, exp, jti, kid)

    def permitted(self, query: str) -> bool:
        """Whether the token's scope satisfies a (valid) permission query."""
        result = self.memo.get(query)
        if result is None:
            if len(self.memo) >= _MEMO_LIMIT:
                self.memo.clear()
            result = self.memo[query] = evaluate(parse_query(query), self.grants)
        return result
