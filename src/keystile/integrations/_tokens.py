"""API tokens in the integrations (SPEC T3, I2, P8): a bearer credential with a JWT's shape is checked offline
against the server's public keys (``GET /.well-known/jwks.json``), never sent to the server unless asked to.

- :class:`JwksCache` fetches the key set and keeps it as long as its ``Cache-Control: max-age`` says (bounded
  both ways); a token naming a ``kid`` it does not hold makes it fetch again, at most once per ``min_refetch_s``,
  so a flood of made-up ``kid``\\ s cannot hammer the server.
- :class:`TokenVerifier` checks the signature (EdDSA only: ``none`` and HMAC are refused before any key is
  looked at), ``iss``, ``exp``/``iat`` with a small leeway and ``aud`` when configured, then keeps what the token
  grants until its ``exp`` (at most ``cache_size`` tokens, by SHA-256 digest): a token seen before costs a hash
  and a lookup. With ``online=True`` it also asks the server's ``POST /v1/tokens/verify`` (a root key with
  ``keys.verify``), so a token whose key was revoked is refused (``REVOKED``) instead of working until its ``exp``.

A :class:`TokenVerifier` is also a verifier on its own (for services that accept tokens only and hold no root
key): every key is then refused as ``NOT_FOUND``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from keystile.core.tokens import TokenGrant
from keystile.core.verify import Code
from keystile.errors import KeystileError, StorageError
from keystile.http.refusals import refusal
from keystile.schemas import TokenVerifyRequest, VerifyRequest, VerifyResponse

if TYPE_CHECKING:
    from keystile.client import AsyncClient

log = logging.getLogger("keystile.integrations")

ALGORITHM = "EdDSA"
JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"
DEFAULT_LEEWAY_S = 5
DEFAULT_MAX_AGE_S = 300.0
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*(\d+)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*no-(?:cache|store)\b", re.IGNORECASE)


def _unavailable(detail: str) -> StorageError:
    return StorageError(f"tokens cannot be checked: {detail}", code="verification_unavailable")


def max_age_of(cache_control: str | None, default: float) -> float:
    """Seconds a response may be kept, by its ``Cache-Control`` (``no-cache``/``no-store``: 0)."""
    if not cache_control:
        return default
    if _NO_CACHE.search(cache_control):
        return 0.0
    found = _MAX_AGE.search(cache_control)
    return float(found.group(1)) if found else default


class JwksCache:
    """The server's JSON Web Key Set, fetched on first use and kept by its cache headers.

    The set is kept for its ``max-age`` (between ``min_refetch_s`` and ``max_age_s``; ``default_max_age_s``
    without one). An unknown ``kid`` fetches it again at most once per ``min_refetch_s``. When a fetch fails, the
    keys held are kept (and used) until a later fetch succeeds; without any, the check is unavailable (503).
    """

    def __init__(
        self,
        url: str,
        *,
        http: httpx.AsyncClient | None = None,
        min_refetch_s: float = 1.0,
        default_max_age_s: float = DEFAULT_MAX_AGE_S,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._owned = http is None
        self._min_refetch = min_refetch_s
        self._default_max_age = default_max_age_s
        self._max_age = max_age_s
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fresh_until = -1.0
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many times the set was fetched (for tests and the curious)."""

    def client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=5.0)
        return self._http

    async def key(self, kid: str) -> Any | None:
        """The public key (a ``cryptography`` Ed25519 key) of ``kid``, or ``None`` when the server has none."""
        now = self._clock()
        if now >= self._fresh_until:
            await self._refresh(now, stale=True)
        found = self._keys.get(kid)
        if found is None and (self._fetched_at is None or now - self._fetched_at >= self._min_refetch):
            await self._refresh(now, stale=False)
            found = self._keys.get(kid)
        return found

    async def _refresh(self, now: float, *, stale: bool) -> None:
        async with self._lock:
            # Another request may have fetched while this one waited.
            if self._fetched_at is not None and (
                (stale and self._clock() < self._fresh_until) or (not stale and self._fetched_at >= now)
            ):
                return
            self._fetched_at = self._clock()
            self.fetches += 1
            try:
                response = await self.client().get(self.url, headers={"accept": "application/json"})
                response.raise_for_status()
                keys = self._parse(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                # Keep serving the keys held; ask again no sooner than min_refetch_s.
                self._fresh_until = self._fetched_at + self._min_refetch
                if not self._keys:
                    raise _unavailable(
                        f"the key set at {self.url} could not be fetched ({type(exc).__name__})"
                    ) from exc
                log.warning("fetching the token key set failed (%s); using the keys held", type(exc).__name__)
                return
            age = max_age_of(response.headers.get("cache-control"), self._default_max_age)
            self._keys = keys
            self._fresh_until = self._fetched_at + min(max(age, self._min_refetch), self._max_age)

    @staticmethod
    def _parse(document: object) -> dict[str, Any]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JSON Web Key Set")
        keys: dict[str, Any] = {}
        for jwk in document["keys"]:
            # Ed25519 keys only: an RSA, EC or symmetric key in the set could never sign a token accepted here.
            if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                continue
            kid = jwk.get("kid")
            if not isinstance(kid, str) or jwk.get("alg", ALGORITHM) != ALGORITHM:
                continue
            try:
                keys[kid] = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
            except jwt.PyJWTError:
                continue
        return keys

    async def aclose(self) -> None:
        if self._http is not None and self._owned:
            await self._http.aclose()
        self._http = None


class _Checked:
    """A token verified before: what it grants and (online) until when the server's answer is trusted."""

    __slots__ = ("grant", "online_until")

    def __init__(self, grant: TokenGrant) -> None:
        self.grant = grant
        self.online_until = -1.0


class TokenVerifier:
    """Checks API tokens offline against a Keystile server's key set (see the module's description).

    ``url`` is the server's base URL (the key set is ``url + /.well-known/jwks.json`` unless ``jwks_url``);
    ``issuer`` the ``iss`` tokens must carry (default: the server's, read once from its OAuth metadata);
    ``audience`` an ``aud`` tokens must carry (OAuth access tokens carry their API's id; tokens of
    ``POST /v1/tokens`` have none and are then refused); ``leeway_s`` the clock difference allowed for ``exp``
    and ``iat``. ``online=True`` asks the server about each token too, through ``client`` (with a root key), its
    answers kept for ``online_cache_s``.
    """

    def __init__(
        self,
        url: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        jwks_url: str | None = None,
        leeway_s: float = DEFAULT_LEEWAY_S,
        online: bool = False,
        client: AsyncClient | None = None,
        online_cache_s: float = 2.0,
        cache_size: int = 10_000,
        min_refetch_s: float = 1.0,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if online and client is None:
            raise ValueError("online=True needs client=AsyncClient(url, root_key) (a root key with keys.verify)")
        self.url = url.rstrip("/")
        self.jwks = JwksCache(jwks_url or self.url + JWKS_PATH, http=http, min_refetch_s=min_refetch_s)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_s
        self.online = online
        self._client = client
        self._online_ttl = online_cache_s
        self._size = cache_size
        self._clock = clock
        self._cache: OrderedDict[bytes, _Checked] = OrderedDict()
        self.tokens = self
        """A verifier of tokens (the integrations look for one here): itself."""

    # -- the integrations' entry point ------------------------------------------------------------------------

    async def check_token(self, token: str, *, permissions: str | None, api_id: str | None) -> TokenGrant:
        """What a token grants, or raise the refusal to answer it with (401 for a token that does not
        verify, 403 ``INSUFFICIENT_PERMISSIONS``) or 503 ``verification_unavailable``."""
        digest = hashlib.sha256(token.encode()).digest()
        checked = self._cache.get(digest)
        now = self._clock()
        if checked is None:
            checked = await self._check(token)
            self._remember(digest, checked, now)
        grant = checked.grant
        if grant.expires_at + self.leeway <= now:
            self._cache.pop(digest, None)
            raise refusal(Code.EXPIRED)
        if api_id is not None and grant.api_id != api_id:
            raise refusal(Code.NOT_FOUND)
        if self.online and checked.online_until <= now:
            await self._ask(token)
            checked.online_until = now + self._online_ttl
        if permissions is not None and not grant.permitted(permissions):
            raise refusal(Code.INSUFFICIENT_PERMISSIONS)
        return grant

    async def _check(self, token: str) -> _Checked:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise refusal(Code.NOT_FOUND) from None
        kid = header.get("kid")
        # The algorithm is fixed here, never taken from the token: "none" and HS256 (signed with the public key
        # as a secret) are refused before any key is looked at.
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or len(kid) > 100:
            raise refusal(Code.NOT_FOUND)
        key = await self.jwks.key(kid)
        if key is None:
            raise refusal(Code.NOT_FOUND)
        issuer = self.issuer or await self._discover_issuer()
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise refusal(Code.EXPIRED) from None
        except jwt.PyJWTError:
            raise refusal(Code.NOT_FOUND) from None
        grant = TokenGrant.from_claims(claims, kid)
        if grant is None:
            raise refusal(Code.NOT_FOUND)
        return _Checked(grant)

    def _remember(self, digest: bytes, checked: _Checked, now: float) -> None:
        cache = self._cache
        cache[digest] = checked
        if len(cache) > self._size:
            for old in [d for d, c in cache.items() if c.grant.expires_at + self.leeway <= now]:
                del cache[old]
            while len(cache) > self._size:
                cache.popitem(last=False)

    async def _discover_issuer(self) -> str:
        """The server's ``issuer``, from its OAuth 2.0 authorization server metadata (once)."""
        try:
            response = await self.jwks.client().get(self.url + METADATA_PATH)
            response.raise_for_status()
            issuer = response.json().get("issuer")
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise _unavailable(f"the server's issuer could not be read ({type(exc).__name__})") from exc
        if not isinstance(issuer, str) or not issuer:
            raise _unavailable("the server's metadata names no issuer")
        self.issuer = issuer
        return issuer

    async def _ask(self, token: str) -> None:
        assert self._client is not None
        try:
            answer = await self._client.verify_token(TokenVerifyRequest(token=token))
        except KeystileError as exc:
            log.error("checking a token online failed: %s", exc)
            raise _unavailable("the server could not be asked") from exc
        if not answer.valid:
            raise refusal(answer.code)

    # -- a verifier on its own (tokens only) ------------------------------------------------------------------

    async def verify(self, request: VerifyRequest) -> VerifyResponse:
        """Keys are not this verifier's business: ``NOT_FOUND`` (tokens are checked by :meth:`check_token`)."""
        return VerifyResponse(valid=False, code="NOT_FOUND")

    def now(self) -> float:
        return self._clock()

    async def aclose(self) -> None:
        self._cache.clear()
        await self.jwks.aclose()
