"""``POST /v1/keys/verify`` (SPEC V1) as a raw ASGI handler: the hot path, kept free of framework overhead.

Per request: one pass over the headers (size limit, root key, content length, request id), a receive loop, a
module-level msgspec decoder, the root key's principal and the verification from the services' one entry point
(both answered from the cache without touching storage when they are there), then two ``send`` calls with bytes
encoded once per cached key and answer code (:mod:`keystile.http.verify`). A client's request id is checked only
when one is sent; one is made up, and anything logged, only on errors.
"""

from __future__ import annotations

from keystile.core.ids import accepted_request_id
from keystile.errors import Unauthenticated
from keystile.http.asgi import (
    HEADER_OVERHEAD,
    HUGE_LENGTH,
    MAX_LENGTH_DIGITS,
    Receive,
    Scope,
    Send,
    read_body,
    request_id_from,
    too_large_body,
    too_large_headers,
)
from keystile.http.credentials import AMBIGUOUS_AUTHORIZATION, root_key
from keystile.http.problems import send_problem
from keystile.http.verify import check_of, decode_request, send_answer
from keystile.server.runtime import Runtime


class VerifyEndpoint:
    """The raw ASGI handler of ``POST /v1/keys/verify``."""

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self._runtime
        authorization = length = sent_id = None
        key: str | None = None
        size = 0
        ambiguous = False
        for name, value in scope["headers"]:
            size += len(name) + len(value) + HEADER_OVERHEAD
            if name == b"authorization":
                if authorization is not None and value != authorization:
                    ambiguous = True
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"x-request-id":
                sent_id = value
        try:
            if size > runtime.max_headers:
                raise too_large_headers(runtime.max_headers)
            # http.asgi.parse_length, inlined on the hot path.
            expected = None
            if length is not None and length.isdigit():
                expected = int(length) if len(length) <= MAX_LENGTH_DIGITS else HUGE_LENGTH
            if expected is not None and expected > runtime.max_body:
                raise too_large_body(runtime.max_body)
            if ambiguous:  # two different Authorization headers: neither is taken (as on every other route)
                raise Unauthenticated(AMBIGUOUS_AUTHORIZATION, code="ambiguous_credentials")
            ks = runtime.ks
            principal = await ks.root_keys.authenticate(root_key(authorization))
            request = decode_request(await read_body(receive, runtime.max_body, expected))
            key = request.key
            # Only when a client sent one: the same rule as everywhere, and never the key being verified.
            request_id = accepted_request_id(sent_id.decode("latin-1"), key) if sent_id is not None else None
            result = await ks.verification.verify(principal, check_of(request), request_id)
        except Exception as exc:
            # Bad input, a body that ended early (answered too: granian cannot tell a malformed chunked body from
            # a client that left), a fault.
            await send_problem(send, exc, request_id_from(scope["headers"], key))
            return
        await send_answer(send, result)
