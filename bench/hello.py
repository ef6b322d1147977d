"""The P2 baselines: raw ASGI apps answering a fixed small JSON body to any request.

``app`` does not read the request body, so it is the cheapest thing the server stack (granian, ASGI interface)
can serve: the SPEC P2 baseline. ``app_reading_body`` first reads the request body to its last message, as any
handler of a POST must: context that shows how much of the gap to ``app`` is the stack's cost of delivering a
body. ``http_verify.py`` runs them beside Keystile with the same worker count and the same requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'{"hello":"world"}'
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
}
_BODY = {"type": "http.response.body", "body": BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``{"hello":"world"}`` to every HTTP request; accept lifespan events."""
    if scope["type"] == "http":
        await send(_START)
        await send(_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def app_reading_body(scope: Scope, receive: Receive, send: Send) -> None:
    """:func:`app`, after reading the request body as a POST handler must: until Content-Length bytes (or the
    last message) have arrived. Keystile's handler reads the same way."""
    if scope["type"] == "http":
        expected = next((int(v) for k, v in scope["headers"] if k == b"content-length"), None)
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False) or size == expected:
                break
        await send(_START)
        await send(_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


_EMPTY_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
_EMPTY_BODY = {"type": "http.response.body", "body": b""}


async def app_empty(scope: Scope, receive: Receive, send: Send) -> None:
    """A trivial verifier for nginx's ``auth_request``: 200 with an empty body to every request (P3's context:
    what forward auth costs nginx when the verifier costs nothing)."""
    if scope["type"] == "http":
        await send(_EMPTY_START)
        await send(_EMPTY_BODY)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
