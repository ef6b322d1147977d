"""The proxy as a raw ASGI app: check the key in-process, then stream the request to the upstream and back.

Verification is the same as ``POST /v1/keys/verify`` without the network hop: this process opens the configured
storage, keeps the same cache, follows the same change bus (so a revocation anywhere reaches it), spends limits
and credits through the same backends and records each verification as an event (SPEC O1).

Bodies are never held whole: the request body goes to the upstream as the client sends it (with its
``Content-Length`` when it declared one, else chunked), and the upstream's answer goes back chunk by chunk, so the
proxy's memory does not grow with the size of what passes through it. Request body size limits are therefore
the upstream's to enforce; the header size limit (``KEYSTILE_MAX_HEADER_BYTES``) applies here.

API tokens (a credential with a JWT's shape) pass as keys do, checked in process against the deployment's own
signing keys and the state of the key that issued them (:meth:`TokenService.check
<keystile.service.tokens.TokenService.check>`); they spend nothing and record no event, and the upstream sees the
identity headers of the key that issued them with ``X-Keystile-Token: true``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from keystile.config import Settings
from keystile.core.tokens import looks_like_token
from keystile.core.verify import Code, KeyCheck, VerifyResult
from keystile.errors import KeystileError, StorageError
from keystile.http.answers import identity_headers, ratelimit_headers, retry_after_s, token_identity_headers
from keystile.http.asgi import (
    IncompleteBody,
    Message,
    Receive,
    Scope,
    Send,
    header,
    header_bytes,
    request_id_from,
    too_large_headers,
)
from keystile.http.credentials import extract_key
from keystile.http.forwarded import TrustedProxies, forwarded_chain, peer
from keystile.http.problems import send_problem
from keystile.http.refusals import refusal
from keystile.http.transport import transport_security, with_header
from keystile.proxy._headers import response_headers, strip_key_parameter, upstream_headers
from keystile.proxy._options import ProxyOptions
from keystile.service.verification import OPERATOR

if TYPE_CHECKING:
    from keystile.service import Keystile

log = logging.getLogger("keystile.proxy")

UPSTREAM_UNAVAILABLE = KeystileError("the upstream service could not be reached or failed", code="upstream_unavailable")
UPSTREAM_TIMEOUT = KeystileError("the upstream service did not answer in time", code="upstream_timeout")


class ProxyApp:
    """``keystile proxy``'s ASGI app (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        options: ProxyOptions,
        *,
        keystile: Keystile | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.keystile = keystile
        self.client = client
        self._owned: list[Any] = []
        self._trusted = TrustedProxies(settings.trusted_proxies)
        self._hsts, self._plain_http = transport_security(settings)
        base = httpx.URL(options.upstream)
        self._base = base
        self._base_path = base.raw_path.split(b"?")[0].rstrip(b"/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are off in granian; nothing else reaches an ASGI app
        if self._plain_http is not None:
            self._plain_http(scope)
        elif self._hsts is not None:
            send = with_header(send, self._hsts)
        # The key travels in the headers or the api_key parameter: neither may pass as the request id.
        request_id = request_id_from(scope["headers"], query_string=scope.get("query_string", b""))
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._handle(scope, receive, tracked, request_id)
        except Exception as exc:
            if started:
                if isinstance(exc, IncompleteBody):
                    return  # the client is gone (or its body broke) mid-answer: nobody left to tell
                raise  # an answer has begun: cut the connection, so the client sees it incomplete
            # A body that ended early is a 400 (granian cannot tell a malformed chunked body from a client that
            # left); anything unexpected a 500 that says nothing, with the traceback in the log.
            await send_problem(send, exc, request_id)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        headers = scope["headers"]
        if header_bytes(headers) > self.settings.max_header_bytes:
            await send_problem(send, too_large_headers(self.settings.max_header_bytes), request_id)
            return
        try:
            found = extract_key(headers, scope.get("query_string", b""))
            if found is None:
                raise refusal("missing_key")
            if looks_like_token(found[0]):
                identity = await self._check_token(found[0])
            else:
                identity = None
                result = await self._verify(found[0], self._trusted.client(scope), request_id)
        except KeystileError as exc:  # refused (no key, two keys), bad input, storage unreachable
            await send_problem(send, exc, request_id)
            return
        if identity is not None:
            await self._forward(scope, receive, send, request_id, identity, [])
            return
        ks = self.keystile
        now_ms = ks.ctx.clock.now() * 1000 if ks is not None else 0.0
        states = result.spent.ratelimits if result.spent is not None else ()
        limits = ratelimit_headers(states, now_ms)
        if not result.valid:
            retry_after = None
            if result.code in (Code.RATE_LIMITED, Code.USAGE_EXCEEDED):
                retry_after = retry_after_s(result.code, result.entry, states, now_ms)
            await send_problem(send, refusal(result.code, retry_after), request_id, limits)
            return
        assert result.entry is not None, "a VALID result names its key"
        await self._forward(scope, receive, send, request_id, identity_headers(result.entry), limits)

    async def _check_token(self, token: str) -> list[tuple[bytes, bytes]]:
        """The identity headers of a token that passes; raises the refusal of one that does not."""
        ks = self.keystile
        if ks is None:
            raise StorageError("the proxy is starting and has not opened its storage yet", code="not_ready")
        checked = await ks.tokens.check(token, api_id=self.options.api_id, permissions=self.options.permissions)
        if not checked.valid or checked.grant is None:
            raise refusal(checked.code)
        return token_identity_headers(checked.grant)

    async def _verify(self, key: str, client_ip: str | None, request_id: str) -> VerifyResult:
        ks = self.keystile
        if ks is None:
            raise StorageError("the proxy is starting and has not opened its storage yet", code="not_ready")
        options = self.options
        check = KeyCheck(key, api_id=options.api_id, permissions=options.permissions, ip=client_ip, cost=options.cost)
        return await ks.verification.verify(OPERATOR, check, request_id)

    # -- forwarding ---------------------------------------------------------------------------------------------

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        identity: list[tuple[bytes, bytes]],
        limits: list[tuple[bytes, bytes]],
    ) -> None:
        client = self.client
        assert client is not None, "the lifespan opens the client"
        outgoing = upstream_headers(scope["headers"], self._added_headers(scope, request_id, identity, limits))
        first = await receive()
        if first["type"] != "http.request":
            raise IncompleteBody
        # Whether a body follows is known from the first message (HTTP/2 requests need not declare a length).
        body = first.get("body", b"")
        content = _request_body(body, receive) if body or first.get("more_body", False) else b""
        request = client.build_request(scope["method"], self._url(scope), headers=outgoing, content=content)
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            log.warning("the upstream did not answer in time", extra={"request_id": request_id})
            await send_problem(send, UPSTREAM_TIMEOUT, request_id)
            return
        except httpx.TransportError as exc:
            log.warning("the upstream could not be reached: %s", type(exc).__name__, extra={"request_id": request_id})
            await send_problem(send, UPSTREAM_UNAVAILABLE, request_id)
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response_headers(response.headers.raw, limits),
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.TransportError as exc:
            # The answer has begun: all that is left is to cut it short, so the client sees it incomplete.
            log.warning("the upstream failed mid-answer: %s", type(exc).__name__, extra={"request_id": request_id})
            raise
        finally:
            await response.aclose()

    def _added_headers(
        self,
        scope: Scope,
        request_id: str,
        identity: list[tuple[bytes, bytes]],
        limits: list[tuple[bytes, bytes]],
    ) -> list[tuple[bytes, bytes]]:
        """Who the caller is, its rate-limit state, where the request came from, and its request id."""
        headers = scope["headers"]
        address = peer(scope)
        added = [*identity, *limits, (b"x-request-id", request_id.encode())]
        chain = forwarded_chain(headers, address, self._trusted.trusts(address))
        if chain is not None:
            added.append((b"x-forwarded-for", chain.encode("latin-1")))
        proto = self._trusted.forwarded(scope, b"x-forwarded-proto") or scope.get("scheme", "http")
        added.append((b"x-forwarded-proto", proto.encode("latin-1")))
        host = self._trusted.forwarded(scope, b"x-forwarded-host")
        original_host = host.encode("latin-1") if host is not None else header(headers, b"host")
        if original_host is not None:
            added.append((b"x-forwarded-host", original_host))
        return added

    def _url(self, scope: Scope) -> httpx.URL:
        path: bytes = scope.get("raw_path") or scope["path"].encode()
        query = strip_key_parameter(scope.get("query_string", b""))
        target = self._base_path + path
        return self._base.copy_with(raw_path=target + b"?" + query if query else target)

    # -- lifespan -----------------------------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.error("the proxy could not start", exc_info=exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        """Open what was not handed in: the services on the configured storage, and the upstream client."""
        from keystile.service import Keystile

        if self.keystile is None:
            self.keystile = await Keystile.open(self.settings, server=True)
            self._owned.append(self.keystile)
        if self.client is None:
            self.client = new_client(self.options)
            self._owned.append(self.client)

    async def close(self) -> None:
        """Close what :meth:`start` opened (flushing buffered events)."""
        for owned in reversed(self._owned):
            if isinstance(owned, httpx.AsyncClient):
                await owned.aclose()
            else:
                await owned.close()
        self._owned = []


def new_client(options: ProxyOptions) -> httpx.AsyncClient:
    """The upstream client: pooled keep-alive connections, no redirects followed, no proxy from the environment."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(options.upstream_timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        follow_redirects=False,
        trust_env=False,
    )


async def _request_body(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    """The client's body, from its ``first`` chunk on, chunk by chunk as it arrives; raises IncompleteBody
    when the client leaves."""
    if first:
        yield first
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            raise IncompleteBody
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
