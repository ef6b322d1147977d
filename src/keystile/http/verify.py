"""Verification on the wire (SPEC V1): the request ``POST /v1/keys/verify`` takes, and the answer every shell that
answers with a verification's JSON gives (the server's fast path, the integrations' local verifier, the CLI).

Answers about a cached key are encoded once per key and code and kept on the cache entry
(:attr:`~keystile.core.verify.CachedKey.encoded`, for the most recently answered entries: see
:func:`~keystile.core.verify.encoded_of`), so a verification of a recently answered key encodes nothing: the bytes
go out as they are. An answer that spent (limits, credits) has this request's numbers at its end: its beginning is
kept the same way, and only the end is encoded per request.
"""

from __future__ import annotations

import math

import msgspec

from keystile.core.ports import Outcome
from keystile.core.timefmt import to_rfc3339
from keystile.core.verify import CachedKey, Code, KeyCheck, VerifyResult, encoded_of
from keystile.http.asgi import JSON, Message, Send, encode_json, start_message
from keystile.schemas import RateLimitState, RemainingOut, VerifyRequest, VerifyResponse, decode

_decode = msgspec.json.Decoder(VerifyRequest).decode

NOT_FOUND_BODY = encode_json(VerifyResponse(valid=False, code="NOT_FOUND"))
"""``NOT_FOUND`` says nothing but its code, whichever API the key belongs to (SPEC V1, S2)."""

# How an answer that carries no credits nor limits ends: an answer that spent has its own there.
_UNSPENT_END = b'null,"ratelimits":null}'
_SPENT_HEAD = {code: "spent:" + code for code in (Code.VALID, Code.RATE_LIMITED, Code.USAGE_EXCEEDED)}
# Start messages by body length: they differ in nothing else, and the server does not change them.
_STARTS: dict[int, Message] = {}
_STARTS_KEPT = 4096


def decode_request(body: bytes) -> VerifyRequest:
    """The request in ``body``; raises the ``InvalidInput`` that names the field at fault."""
    try:
        return _decode(body)
    except msgspec.DecodeError:
        return decode(body, VerifyRequest)  # raises, naming the field


def check_of(request: VerifyRequest) -> KeyCheck:
    """The verification a wire request asks for."""
    return KeyCheck(
        request.key,
        api_id=request.api_id,
        permissions=request.permissions,
        ip=request.ip,
        cost=request.credits.cost if request.credits is not None else None,
        ratelimits=[(limit.name, limit.cost) for limit in request.ratelimits] if request.ratelimits else None,
        tags=request.tags or (),
    )


def verify_response(entry: CachedKey, code: str, spent: Outcome | None = None) -> VerifyResponse:
    """The answer about a known key. Without ``spent`` it depends only on the cached entry and the code; with it,
    the credits left and the limits' states are this request's."""
    key = entry.key
    own = list(key.permissions)
    # Effective permissions: the key's own first, then what its roles add, in a stable order.
    effective = own + sorted(entry.grants.exact.difference(own))
    return VerifyResponse(
        valid=code == Code.VALID,
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
        ratelimits=[_state(s.name, s.limit, s.remaining, s.reset_at) for s in (spent.ratelimits if spent else ())],
    )


def response_of(result: VerifyResult) -> VerifyResponse:
    """The answer of a verification, as a struct (the integrations hand it to applications)."""
    if result.entry is None:
        return VerifyResponse(valid=False, code="NOT_FOUND")
    return verify_response(result.entry, result.code, result.spent)


def answer_body(result: VerifyResult) -> bytes:
    """The answer of a verification, encoded (from the cache entry when it was encoded before)."""
    entry = result.entry
    if entry is None:
        return NOT_FOUND_BODY
    encoded = entry.encoded
    if encoded is None:
        encoded = encoded_of(entry)
    spent = result.spent
    if spent is not None:
        return _spent_body(entry, encoded, result.code, spent)
    body = encoded.get(result.code)
    if body is None:
        body = encoded[result.code] = encode_json(verify_response(entry, result.code))
    return body


async def send_answer(send: Send, result: VerifyResult) -> None:
    """Answer 200 with the verification's JSON."""
    body = answer_body(result)
    start = _STARTS.get(len(body))
    if start is None:
        if len(_STARTS) >= _STARTS_KEPT:
            _STARTS.clear()
        start = _STARTS[len(body)] = start_message(200, JSON, len(body))
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _spent_body(entry: CachedKey, encoded: dict[str, bytes], code: str, spent: Outcome) -> bytes:
    # Its beginning, encoded once per cached key and code, then this request's credits and limits (encoding the
    # whole answer on every request costs several times more).
    name = _SPENT_HEAD.get(code) or "spent:" + code
    head = encoded.get(name)
    if head is None:
        unspent = msgspec.structs.replace(verify_response(entry, code), credits=None, ratelimits=None)
        head = encoded[name] = encode_json(unspent)[: -len(_UNSPENT_END)]  # ends with "credits":
    credits = b"null" if spent.remaining is None else b'{"remaining":%d}' % spent.remaining
    limits = encode_json([_state(s.name, s.limit, s.remaining, s.reset_at) for s in spent.ratelimits])
    return b"".join((head, credits, b',"ratelimits":', limits, b"}"))


def _state(name: str, limit: int, remaining: int, reset_at: float) -> RateLimitState:
    return RateLimitState(name, limit, remaining, to_rfc3339(math.ceil(reset_at)) or "")


def _credits(entry: CachedKey, spent: Outcome | None) -> RemainingOut | None:
    if spent is not None:
        return RemainingOut(spent.remaining) if spent.remaining is not None else None
    # Not spent (the key was refused before its balance was reached): the balance as last read.
    return RemainingOut(entry.credits.remaining) if entry.credits is not None else None
