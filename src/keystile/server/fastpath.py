"""``POST /v1/keys/verify`` (SPEC V1) as a raw ASGI handler: the hot path, kept free of framework overhead.

Per request: one pass over the headers (size limit, root key, content length), a receive loop, a module-level
msgspec decoder, a cache-only root-key check and a cache-only verification (storage is awaited only on a miss),
then two ``send`` calls with messages that were encoded once per cached key and answer code. A client's request
id is checked only when one is sent; one is made up, and anything logged, only on errors.
"""

from __future__ import annotations

import math

import msgspec

from keystile.core.ids import accepted_request_id
from keystile.core.ports import Outcome
from keystile.core.timefmt import to_rfc3339
from keystile.core.verify import CachedKey
from keystile.errors import StorageError, Unauthenticated
from keystile.schemas import RateLimitState, RemainingOut, VerifyRequest, VerifyResponse
from keystile.server.auth import MISSING_ROOT_KEY
from keystile.server.http import (
    HEADER_OVERHEAD,
    HUGE_LENGTH,
    JSON,
    MAX_LENGTH_DIGITS,
    Message,
    Receive,
    Scope,
    Send,
    body_message,
    encode_json,
    read_body,
    request_id_from,
    start_message,
    too_large_body,
    too_large_headers,
)
from keystile.server.problems import send_problem
from keystile.server.runtime import Runtime
from keystile.service.validate import decode

_decode_request = msgspec.json.Decoder(VerifyRequest).decode

Answer = tuple[Message, Message]


def _answer(body: bytes) -> Answer:
    return start_message(200, JSON, len(body)), body_message(body)


# NOT_FOUND says nothing but its code, whichever API the key belongs to (SPEC V1, S2).
NOT_FOUND_ANSWER = _answer(encode_json(VerifyResponse(valid=False, code="NOT_FOUND")))


def verify_response(entry: CachedKey, code: str, spent: Outcome | None = None) -> VerifyResponse:
    """The V1 answer about a known key. Without ``spent`` it depends only on the cached entry and the code (and
    is cached); with it, the credits left and the limits' states are this request's."""
    key = entry.key
    own = list(key.permissions)
    # Effective permissions: the key's own first, then what its roles add, in a stable order.
    effective = own + sorted(entry.grants.exact.difference(own))
    return VerifyResponse(
        valid=code == "VALID",
        code=code,  # type: ignore[arg-type]
        key_id=key.id,
        api_id=key.api_id,
        name=key.name,
        owner_id=key.owner_id,
        meta=key.meta,
        permissions=effective,
        roles=list(entry.role_names),
        expires_at=to_rfc3339(entry.expires_at),
        credits=_credits(entry, spent),
        ratelimits=[
            RateLimitState(s.name, s.limit, s.remaining, to_rfc3339(math.ceil(s.reset_at)) or "")
            for s in (spent.ratelimits if spent is not None else ())
        ],
    )


def _credits(entry: CachedKey, spent: Outcome | None) -> RemainingOut | None:
    if spent is not None:
        return RemainingOut(spent.remaining) if spent.remaining is not None else None
    # Not spent (the key was refused before its balance was reached): the balance as last read.
    return RemainingOut(entry.credits.remaining) if entry.credits is not None else None


# How an answer that carries no credits nor limits ends: an answer that spent has its own there.
_UNSPENT_END = b'null,"ratelimits":null}'


def _spent_body(entry: CachedKey, code: str, spent: Outcome) -> bytes:
    """The answer of a verification that spent: its beginning, encoded once per cached key and code, then this
    request's credits and limits (encoding the whole answer on every request costs several times more)."""
    answers = entry.extra
    if answers is None:
        answers = entry.extra = {}
    head = answers.get((code, "spent"))
    if head is None:
        unspent = msgspec.structs.replace(verify_response(entry, code), credits=None, ratelimits=None)
        body = encode_json(unspent)
        head = answers[(code, "spent")] = body[: -len(_UNSPENT_END)]  # ends with "credits":
    credits = b"null" if spent.remaining is None else b'{"remaining":%d}' % spent.remaining
    limits = encode_json(
        [
            RateLimitState(s.name, s.limit, s.remaining, to_rfc3339(math.ceil(s.reset_at)) or "")
            for s in spent.ratelimits
        ]
    )
    return b"".join((head, credits, b',"ratelimits":', limits, b"}"))


def _token(value: bytes | None) -> str:
    if value is not None:
        scheme, _, token = value.partition(b" ")
        if scheme.lower() == b"bearer" and (token := token.strip()):
            return token.decode("latin-1")
    raise Unauthenticated(MISSING_ROOT_KEY, code="missing_root_key")


class VerifyEndpoint:
    """The raw ASGI handler of ``POST /v1/keys/verify``."""

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self._runtime
        authorization = length = sent_id = None
        key: str | None = None
        request_id: str | None = None
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value) + HEADER_OVERHEAD
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"x-request-id":
                sent_id = value
        try:
            if size > runtime.max_headers:
                raise too_large_headers(runtime.max_headers)
            # http.parse_length, inlined on the hot path.
            expected = None
            if length is not None and length.isdigit():
                expected = int(length) if len(length) <= MAX_LENGTH_DIGITS else HUGE_LENGTH
            if expected is not None and expected > runtime.max_body:
                raise too_large_body(runtime.max_body)
            ks = runtime.keystile
            if ks is None:
                raise StorageError("the server is starting and has not opened its storage yet", code="not_ready")
            token = _token(authorization)
            principal = ks.root_keys.authenticate_cached(token)
            if principal is None:
                principal = await ks.root_keys.authenticate(token)
            body = await read_body(receive, runtime.max_body, expected)
            try:
                request = _decode_request(body)
            except msgspec.DecodeError:
                request = decode(body, VerifyRequest)  # raises the InvalidInput that names the field
            key = request.key
            if sent_id is not None:
                # Only when a client sent one: the same rule as everywhere, and never the key being verified.
                request_id = accepted_request_id(sent_id.decode("latin-1"), key)
            result = ks.verification.verify_cached(principal, request, request_id)
            if result is None:
                result = await ks.verification.verify(principal, request, request_id)
        except Exception as exc:
            # Bad input, a body that ended early (answered too: granian cannot tell a malformed chunked body from
            # a client that left), a fault.
            await send_problem(send, exc, request_id_from(scope["headers"], key))
            return
        entry = result.entry
        if entry is None:
            start, message = NOT_FOUND_ANSWER
        elif result.spent is not None:
            start, message = _answer(_spent_body(entry, result.code, result.spent))
        else:
            answers = entry.extra
            if answers is None:
                answers = entry.extra = {}
            answer = answers.get(result.code)
            if answer is None:
                answer = answers[result.code] = _answer(encode_json(verify_response(entry, result.code)))
            start, message = answer
        await send(start)
        await send(message)
