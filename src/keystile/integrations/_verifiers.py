"""Where the integrations get their answers (SPEC I2): straight from storage, or from a server.

- :class:`LocalVerifier` opens Keystile's services on the database (and Redis, when configured) and calls the
  in-process verifier: no network hop, the same cache and the same consistency as a server (SPEC V6).
- :class:`RemoteVerifier` asks a server's ``POST /v1/keys/verify`` with a root key, and keeps answers that spent
  nothing for a short time (2 s by default), by the key's SHA-256 digest, never the key itself.

Both answer :class:`~keystile.schemas.VerifyResponse`, exactly what the HTTP API answers. Both take API tokens
too (their ``tokens``): the local one checks them in process against the deployment's own signing keys and the
state of the key that issued them; the remote one offline against the server's key set
(:class:`~keystile.integrations.TokenVerifier`), or online as well with ``tokens_online=True``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from keystile.client import ROOT_KEY_VARIABLE, URL_VARIABLE
from keystile.config import Settings
from keystile.core.tokens import TokenGrant
from keystile.integrations._tokens import TokenVerifier
from keystile.schemas import VerifyRequest, VerifyResponse

if TYPE_CHECKING:
    from keystile.client import AsyncClient
    from keystile.service import Keystile

DATABASE_VARIABLE = "KEYSTILE_DATABASE_URL"
REMOTE_CACHE_VARIABLE = "KEYSTILE_REMOTE_CACHE_MS"
TOKENS_ONLINE_VARIABLE = "KEYSTILE_TOKENS_ONLINE"
DEFAULT_REMOTE_CACHE_S = 2.0
# Answers whose key will answer differently on the next request whatever changes: they are never kept.
_SPENDING = frozenset({"RATE_LIMITED", "USAGE_EXCEEDED"})


class KeyVerifier(Protocol):
    """What the integrations need: verify one request, tell the time of its answers (for ``Retry-After``), and
    close when the application stops."""

    async def verify(self, request: VerifyRequest) -> VerifyResponse: ...

    def now(self) -> float: ...

    async def aclose(self) -> None: ...


class LocalVerifier:
    """Verification against the storage itself, in this process (opened on first use, in the running loop).

    ``settings`` are the ones a server of the same deployment runs with (``Settings.from_env``): the database,
    and Redis for shared limits and pushed changes. The storage must have been initialised (``keystile init``,
    or the first ``keystile serve``). Verifications are recorded as events, like a server's. An application that
    holds Keystile's services already passes them as ``keystile`` (they are then not closed here).
    """

    def __init__(self, settings: Settings, *, keystile: Keystile | None = None) -> None:
        from keystile.service.verification import OPERATOR

        self.settings = settings
        self._keystile = keystile
        self._owned = keystile is None
        self._lock = asyncio.Lock()
        self._principal = OPERATOR
        self.tokens = self
        """API tokens are checked here too (:meth:`check_token`)."""

    async def check_token(self, token: str, *, permissions: str | None, api_id: str | None) -> TokenGrant:
        """What a token grants: checked in process against the deployment's signing keys (cached until its
        ``exp``) and the state of the key that issued it (a revoked key's tokens are refused, as fast as the key
        itself is). Raises the refusal to answer it with."""
        from keystile.http.refusals import refusal

        ks = self._keystile or await self._open()
        checked = await ks.tokens.check(token, api_id=api_id, permissions=permissions)
        if not checked.valid or checked.grant is None:
            raise refusal(checked.code)
        return checked.grant

    async def verify(self, request: VerifyRequest) -> VerifyResponse:
        """Verify with every permission (this process holds the database, so it may verify keys of any API).

        Raises ``StorageError`` when the database cannot be reached, ``InvalidInput`` for a bad request."""
        from keystile.http.verify import check_of, response_of

        ks = self._keystile or await self._open()
        return response_of(await ks.verification.verify(self._principal, check_of(request)))

    def now(self) -> float:
        """The time of the verifier's clock, in seconds since the epoch."""
        return self._keystile.ctx.clock.now() if self._keystile is not None else time.time()

    async def _open(self) -> Keystile:
        from keystile.service import Keystile

        async with self._lock:
            if self._keystile is None:
                self._keystile = await Keystile.open(self.settings, retention=False)
            return self._keystile

    async def aclose(self) -> None:
        """Flush the events this process recorded and close the storage."""
        ks, self._keystile = self._keystile, None
        if ks is not None and self._owned:
            await ks.close()


class RemoteVerifier:
    """Verification through a Keystile server, with a short cache of answers that spent nothing.

    An answer is kept for ``cache_ttl`` seconds (per key digest, API, permission query and client IP) unless the
    request or the key spends: a key with rate limits or credits is asked about every time, so its limits hold.
    A key revoked on the server may therefore keep working here for up to ``cache_ttl`` on top of the server's
    own propagation (SPEC V6); ``cache_ttl=0`` turns the cache off.

    API tokens are checked offline against the server's key set by ``tokens`` (a
    :class:`~keystile.integrations.TokenVerifier` of ``url``, made here unless given; ``tokens=None`` refuses
    them). With ``tokens_online=True`` each token is also checked with the server (answers kept for
    ``cache_ttl``), so the tokens of a revoked key are refused at once rather than working until they expire.
    """

    def __init__(
        self,
        url: str,
        root_key: str,
        *,
        cache_ttl: float = DEFAULT_REMOTE_CACHE_S,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        client: AsyncClient | None = None,
        tokens: TokenVerifier | bool | None = True,
        tokens_online: bool = False,
    ) -> None:
        from keystile.client import AsyncClient

        self._client = client or AsyncClient(url, root_key)
        if tokens is True:
            tokens = TokenVerifier(url, online=tokens_online, client=self._client, online_cache_s=cache_ttl)
        self.tokens: TokenVerifier | None = tokens or None
        self._ttl = cache_ttl
        self._size = cache_size
        self._clock = clock
        self._cache: OrderedDict[tuple[bytes, str | None, str | None, str | None], tuple[float, VerifyResponse]] = (
            OrderedDict()
        )

    async def verify(self, request: VerifyRequest) -> VerifyResponse:
        """The server's answer (or a recent one). Raises the client's errors: ``TransportError`` when the server
        does not answer, ``ApiError`` subclasses when it refuses the root key or the request."""
        cacheable = self._ttl > 0 and request.credits is None and not request.ratelimits
        if cacheable:
            slot = (hashlib.sha256(request.key.encode()).digest(), request.api_id, request.permissions, request.ip)
            kept = self._cache.get(slot)
            if kept is not None:
                if kept[0] > self._clock():
                    return kept[1]
                del self._cache[slot]
        answer = await self._client.verify_key(request)
        if cacheable and answer.code not in _SPENDING and answer.credits is None and not answer.ratelimits:
            self._cache[slot] = (self._clock() + self._ttl, answer)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return answer

    def now(self) -> float:
        return time.time()

    async def aclose(self) -> None:
        self._cache.clear()
        if self.tokens is not None:
            await self.tokens.aclose()
        await self._client.aclose()


def verifier_from_env(environ: Mapping[str, str] | None = None) -> KeyVerifier:
    """A :class:`RemoteVerifier` when ``KEYSTILE_URL`` is set (with ``KEYSTILE_ROOT_KEY``, and optionally
    ``KEYSTILE_REMOTE_CACHE_MS``, and ``KEYSTILE_TOKENS_ONLINE=true`` to check tokens with the server), else a
    :class:`LocalVerifier` of ``KEYSTILE_DATABASE_URL`` and the other ``KEYSTILE_*`` settings. Raises ValueError
    when neither is configured."""
    env = os.environ if environ is None else environ
    url = env.get(URL_VARIABLE)
    if url:
        root_key = env.get(ROOT_KEY_VARIABLE)
        if not root_key:
            raise ValueError(f"{URL_VARIABLE} needs {ROOT_KEY_VARIABLE}: a root key with keys.verify")
        cache_ms = env.get(REMOTE_CACHE_VARIABLE)
        ttl = int(cache_ms) / 1000 if cache_ms else DEFAULT_REMOTE_CACHE_S
        online = env.get(TOKENS_ONLINE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")
        return RemoteVerifier(url, root_key, cache_ttl=ttl, tokens_online=online)
    if env.get(DATABASE_VARIABLE):
        return LocalVerifier(Settings.from_env(env))
    raise ValueError(
        f"set {URL_VARIABLE} and {ROOT_KEY_VARIABLE} to verify through a server, or {DATABASE_VARIABLE} to "
        "verify against the database directly"
    )
