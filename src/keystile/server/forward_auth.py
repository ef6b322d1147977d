"""Forward auth, ``/v1/auth`` for any method (SPEC V5): nginx ``auth_request``, Traefik ForwardAuth, Caddy
``forward_auth`` and Envoy ``ext_authz`` (HTTP) ask it whether a request may pass.

A raw ASGI handler like the verification fast path. The answer is all in the status and headers; there is never
a body (one makes nginx drop its upstream connection on every request):

=======  =========================================================================================
status   when
=======  =========================================================================================
200      ``VALID``: ``X-Keystile-Key-Id``, ``-Owner-Id``, ``-Api-Id``, ``RateLimit-*`` (IETF draft)
401      no key, ``NOT_FOUND``, ``REVOKED``, ``DISABLED``, ``EXPIRED``, ``ambiguous_credentials``;
         ``WWW-Authenticate: Bearer``
403      ``FORBIDDEN``, ``INSUFFICIENT_PERMISSIONS``
429      ``RATE_LIMITED``, ``USAGE_EXCEEDED``, ``too_many_failures`` (``Retry-After``; 403 with
         ``KEYSTILE_AUTH_LIMITED_STATUS=403``)
400/503  the proxy's configuration is wrong (``api_id`` missing, a bad option) / storage is unreachable
=======  =========================================================================================

The reason is always in ``X-Keystile-Code``. Options are in the endpoint's own query string (``api_id``,
``permissions``, ``cost``), so they come from the proxy's configuration, never from the client. The key is read
from the original request's ``Authorization`` / ``X-API-Key`` headers (proxies pass them on) and the ``api_key``
parameter of the original URI. Envoy appends the original path to its ``path_prefix``: ``/v1/auth/<path>?<query>``
is the original request itself, with options from the settings only. See docs/forward-auth.md.

An API token (a credential with a JWT's shape) is checked in process against this deployment's own signing keys
(:meth:`TokenService.check <keystile.service.tokens.TokenService.check>`: no HTTP, cached until its ``exp``),
including the state of the key that issued it (a revoked key's tokens are refused like the key). The answers are
a key's, with ``X-Keystile-Token: true``; a token spends no limits or credits (``cost`` does not apply) and
records no event; a failed one counts toward the same per-IP failure limit.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from keystile.core.netaddr import parse_ip
from keystile.core.permissions import parse_query
from keystile.core.tokens import looks_like_token
from keystile.core.verify import CachedKey, Code, KeyCheck, VerifyResult
from keystile.errors import InvalidInput, KeystileError, StorageError
from keystile.http.answers import (
    STATUS,
    identity_headers,
    ratelimit_headers,
    retry_after_s,
    token_identity_headers,
    whole_seconds,
)
from keystile.http.asgi import HEADER_OVERHEAD, Message, Receive, Scope, Send, too_large_headers
from keystile.http.credentials import extract_key
from keystile.http.failures import FailureLimiter
from keystile.http.forwarded import TrustedProxies
from keystile.http.problems import status_of
from keystile.operations import MAX_COST
from keystile.server.runtime import Runtime
from keystile.service.tokens import TokenAuth
from keystile.service.verification import OPERATOR

log = logging.getLogger("keystile.server")

AUTH_PATH = "/v1/auth"
_ENVOY_PREFIX = AUTH_PATH + "/"
_COST_DIGITS = len(str(MAX_COST))
_OPTIONS = frozenset({"api_id", "permissions", "cost"})
_MEMO_LIMIT = 256
_TAG = "forward_auth"

Headers = list[tuple[bytes, bytes]]
# The request headers this endpoint reads, by kind: one dict lookup per header.
_CREDENTIALS, _FORWARDED_FOR, _REAL_IP, _URI, _METHOD = range(5)
_WANTED = {
    b"authorization": _CREDENTIALS,
    b"x-api-key": _CREDENTIALS,
    b"x-forwarded-for": _FORWARDED_FOR,
    b"x-real-ip": _REAL_IP,
    b"x-original-uri": _URI,
    b"x-forwarded-uri": _URI,
    b"x-original-method": _METHOD,
    b"x-forwarded-method": _METHOD,
}
_EMPTY_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}
_CHALLENGE = (b"www-authenticate", b"Bearer")
_VALID = (b"x-keystile-code", b"VALID")
_CODES = {code: code.encode() for code in STATUS}


def _message(status: int, headers: Headers) -> Message:
    return {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0"), *headers]}


class Options:
    """The options of one proxy configuration: the API, a permission query and the credits to spend."""

    __slots__ = ("api_id", "cost", "permissions")

    def __init__(self, api_id: str, permissions: str | None, cost: int | None) -> None:
        self.api_id = api_id
        self.permissions = permissions
        self.cost = cost


def parse_options(query: bytes, default_api: str | None, allowed_apis: frozenset[str]) -> Options:
    """The options of ``/v1/auth``'s own query string; raises :class:`InvalidInput` for a missing ``api_id``, an
    API forward auth may not verify keys of, an unknown, repeated or empty option, a bad cost or permission query.

    Repeated and empty options are refused rather than resolved (last one wins, empty means none): a proxy
    configuration that appends the client's text to this query string would otherwise let the client choose
    the API or drop the permission check (``?permissions=admin&permissions=``).
    """
    given: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name not in _OPTIONS:
            # An unknown option is a typo in the proxy's configuration; better loud than ignored. api_key is not
            # read here either: the key comes from the original request.
            raise InvalidInput(f"/v1/auth has no option {name[:40]!r}", code="invalid_option")
        if name in given:
            raise InvalidInput(f"/v1/auth takes {name} once", code="invalid_option")
        if not value:
            raise InvalidInput(f"{name} is empty: give a value or leave the option out", code="invalid_option")
        given[name] = value
    cost = None
    if (text := given.get("cost")) is not None:
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses, and int() takes "٣".
        if not (text.isascii() and text.isdigit() and len(text) <= _COST_DIGITS) or int(text) > MAX_COST:
            raise InvalidInput(f"cost must be a whole number from 0 to {MAX_COST}", code="invalid_option")
        cost = int(text)
    api_id = given.get("api_id", default_api)
    if not api_id:
        raise InvalidInput("/v1/auth needs ?api_id=<the API whose keys may pass>", code="missing_api_id")
    if allowed_apis and api_id not in allowed_apis:
        raise InvalidInput("forward auth may not verify keys of this API", code="api_not_allowed")
    permissions = given.get("permissions")
    if permissions is not None:
        parse_query(permissions)  # a QuerySyntaxError, a 400 naming the position
    return Options(api_id, permissions, cost)


class ForwardAuthEndpoint:
    """The raw ASGI handler of ``/v1/auth`` (and ``/v1/auth/<original path>``, Envoy's form)."""

    __slots__ = ("_allowed", "_default_api", "_failures", "_limited", "_options", "_proxies", "_runtime", "_tags")

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self._runtime = runtime
        self._proxies = TrustedProxies(settings.trusted_proxies)
        self._allowed = frozenset(settings.auth_api_ids)
        self._default_api = settings.auth_api_ids[0] if len(settings.auth_api_ids) == 1 else None
        self._limited = settings.auth_limited_status
        self._options: dict[bytes, Options] = {}
        self._tags: dict[bytes, tuple[str, ...]] = {}
        self._failures: FailureLimiter | None = None

    def _options_of(self, query: bytes) -> Options:
        options = self._options.get(query)
        if options is None:
            options = parse_options(query, self._default_api, self._allowed)
            if len(self._options) >= _MEMO_LIMIT:
                self._options.clear()
            self._options[query] = options
        return options

    def _tags_of(self, method: bytes) -> tuple[str, ...]:
        tags = self._tags.get(method)
        if tags is None:
            text = method.decode("latin-1").upper()
            tags = (_TAG, f"method:{text}") if text.isalpha() and len(text) <= 16 else (_TAG,)
            if len(self._tags) < _MEMO_LIMIT:
                self._tags[method] = tags
        return tags

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self._runtime
        ks = runtime.keystile
        headers = scope["headers"]
        forwarded_for = real_ip = original_uri = original_method = None
        credentials: Headers = []
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + HEADER_OVERHEAD
            wanted = _WANTED.get(name)
            if wanted is not None:
                if wanted == _CREDENTIALS:
                    credentials.append((name, value))
                elif wanted == _FORWARDED_FOR:
                    forwarded_for = value if forwarded_for is None else forwarded_for + b"," + value
                elif wanted == _REAL_IP:
                    real_ip = value
                elif wanted == _URI:
                    original_uri = value
                else:
                    original_method = value
        client = scope.get("client")
        peer = client[0] if client else None
        trusted = self._proxies.trusts(peer)
        if trusted:
            ip = self._proxies.client_ip(peer, forwarded_for, real_ip)
        else:
            ip = peer if peer is not None and parse_ip(peer) is not None else None  # a unix socket has no address
        try:
            if ks is None:
                raise StorageError("the server is starting and has not opened its storage yet", code="not_ready")
            if size > runtime.max_headers:
                raise too_large_headers(runtime.max_headers)
            path: str = scope["path"]
            if path == AUTH_PATH:
                options = self._options_of(scope["query_string"])
                original_query = b""
                if trusted and original_uri is not None:
                    original_query = original_uri.partition(b"?")[2]
            else:  # Envoy: /v1/auth/<original path>?<original query>
                options = self._options_of(b"")
                original_query = scope["query_string"]
            failures = self._failures
            if failures is None:
                failures = self._failures = runtime.failure_limiter()
            if failures.enabled and (wait := failures.blocked_for(ip)):
                await self._refuse(send, "too_many_failures", whole_seconds(wait))
                return
            try:
                found = extract_key(credentials, original_query)
            except KeystileError as exc:  # ambiguous_credentials
                await self._unauthorized(send, failures, ip, exc.code)
                return
            if found is None:
                await send(_message(401, [_CHALLENGE, (b"x-keystile-code", b"missing_key")]))
                await send(_EMPTY_BODY)
                return
            if looks_like_token(found[0]):
                checked = await ks.tokens.check(found[0], api_id=options.api_id, permissions=options.permissions)
                await self._answer_token(send, checked, failures, ip)
                return
            method = original_method if trusted and original_method is not None else scope["method"].encode()
            tags = self._tags_of(method)
            check = KeyCheck(
                found[0], api_id=options.api_id, permissions=options.permissions, ip=ip, cost=options.cost, tags=tags
            )
            result = await ks.verification.verify(OPERATOR, check)
        except Exception as exc:
            if isinstance(exc, KeystileError) and (status := status_of(exc)) != 500:
                code = exc.code
                if isinstance(exc, StorageError):
                    log.error("forward auth failed: %s (%s)", code, exc.detail)
            else:
                # A fault: logged with its traceback, answered without a word about it.
                status, code = 500, "internal_error"
                log.error("forward auth failed", exc_info=exc)
            await send(_message(status, [(b"x-keystile-code", code.encode())]))
            await send(_EMPTY_BODY)
            return
        await self._answer(send, result, failures, ip)

    async def _answer(self, send: Send, result: VerifyResult, failures: FailureLimiter, ip: str | None) -> None:
        code = result.code
        status = STATUS[code]
        entry = result.entry
        if status == 401 or entry is None:
            await self._unauthorized(send, failures, ip, code)
            return
        spent = result.spent
        if status == 429:
            now_ms = self._runtime.ks.ctx.clock.now() * 1000
            states = spent.ratelimits if spent is not None else ()
            await self._refuse(
                send, code, retry_after_s(code, entry, states, now_ms), ratelimit_headers(states, now_ms)
            )
            return
        if spent is not None and spent.ratelimits:
            now_ms = self._runtime.ks.ctx.clock.now() * 1000
            start = _message(status, [*_identity(entry, code), *ratelimit_headers(spent.ratelimits, now_ms)])
        else:
            start = _message(status, _identity(entry, code))
        await send(start)
        await send(_EMPTY_BODY)

    async def _answer_token(self, send: Send, checked: TokenAuth, failures: FailureLimiter, ip: str | None) -> None:
        code = checked.code
        status = STATUS[code]
        if status == 401 or checked.grant is None:
            await self._unauthorized(send, failures, ip, code)
            return
        if code != Code.VALID:
            await send(_message(status, [(b"x-keystile-code", _CODES.get(code) or code.encode())]))
        else:
            await send(_message(200, [_VALID, *token_identity_headers(checked.grant)]))
        await send(_EMPTY_BODY)

    async def _unauthorized(self, send: Send, failures: FailureLimiter, ip: str | None, code: str) -> None:
        # The same answer whatever the reason, but for its code: nothing about the key (SPEC S2).
        wait = await failures.fail(ip) if failures.enabled else 0.0
        if wait:
            await self._refuse(send, "too_many_failures", whole_seconds(wait))
            return
        await send(_message(401, [_CHALLENGE, (b"x-keystile-code", code.encode())]))
        await send(_EMPTY_BODY)

    async def _refuse(self, send: Send, code: str, retry_after: int, extra: Headers | None = None) -> None:
        headers: Headers = [(b"x-keystile-code", code.encode()), (b"retry-after", b"%d" % retry_after)]
        if extra:
            headers.extend(extra)
        await send(_message(self._limited, headers))
        await send(_EMPTY_BODY)


def _identity(entry: CachedKey, code: str) -> Headers:
    if code != Code.VALID:
        return [(b"x-keystile-code", _CODES.get(code) or code.encode())]
    return [_VALID, *identity_headers(entry)]
