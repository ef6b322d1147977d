"""Plain-ASGI helpers shared by the fast path and the management routes: headers, bodies, request ids, JSON.

Nothing here imports Starlette, so the verification fast path stays a few function calls deep.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from keystile.core.ids import accepted_request_id
from keystile.errors import InvalidInput, TooLarge
from keystile.http.credentials import QUERY_PARAMETER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = Iterable[tuple[bytes, bytes]]

REQUEST_ID_SCOPE_KEY = "keystile.request_id"
JSON = b"application/json"
PROBLEM_JSON = b"application/problem+json"
# Counted per header on top of name and value: ": " and CRLF, as on the wire.
HEADER_OVERHEAD = 4
MAX_LENGTH_DIGITS = 18
"""A declared length with more digits than this is larger than any body limit (and than 2**63)."""
HUGE_LENGTH = 10**MAX_LENGTH_DIGITS

encode_json = msgspec.json.Encoder().encode


class IncompleteBody(InvalidInput):
    """The request body ended before it was complete (400 ``incomplete_body``).

    Granian hands the app ``http.disconnect`` both when the client leaves mid-body and when the body is malformed
    (a chunk size that is not hexadecimal), so the two cannot be told apart: both are answered. A client that
    left never reads the answer, and it costs no more than writing it (no log line, no trace).
    """

    def __init__(self) -> None:
        super().__init__(
            "the request body ended before it was complete: it was cut short or its chunked encoding is malformed",
            code="incomplete_body",
        )


class SlowBody(InvalidInput):
    """The request body did not arrive within ``KEYSTILE_BODY_TIMEOUT_MS`` (408 ``body_timeout``): a client that
    sends its headers and then its body slowly, or never, holds a request of the server until then, and no longer
    (see :mod:`keystile.http.deadline`)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g} s", code="body_timeout")


BODY_TIMED_OUT: weakref.WeakKeyDictionary[asyncio.Task[Any], float] = weakref.WeakKeyDictionary()
"""The requests (their tasks) that :mod:`keystile.http.deadline` cancelled while they read a body, and the
deadline they were given: :func:`read_body` turns that cancellation into :class:`SlowBody`."""


def _cut_off() -> float | None:
    """For a cancellation met while reading a body: the deadline when the body deadline cancelled this task (the
    cancellation is then taken back, and the request answers 408), None for any other (it goes on)."""
    task = asyncio.current_task()
    timeout_s = BODY_TIMED_OUT.pop(task, None) if task is not None else None
    if task is not None and timeout_s is not None:
        task.uncancel()
    return timeout_s


def too_large_body(limit: int) -> TooLarge:
    return TooLarge(f"the request body is larger than {limit} bytes", code="payload_too_large")


def too_large_headers(limit: int) -> TooLarge:
    return TooLarge(f"the request headers are larger than {limit} bytes", code="headers_too_large")


def header_bytes(headers: Headers) -> int:
    """The size of the request headers roughly as they were on the wire."""
    total = 0
    for name, value in headers:
        total += len(name) + len(value) + HEADER_OVERHEAD
    return total


def declared_length(headers: Headers) -> int | None:
    """The ``Content-Length`` the client declared, or ``None`` (absent or not a number)."""
    for name, value in headers:
        if name == b"content-length":
            return parse_length(value)
    return None


def parse_length(value: bytes) -> int | None:
    """A ``Content-Length`` value: ``None`` unless it is ASCII digits (``bytes.isdigit`` takes nothing else).

    More digits than any limit has are :data:`HUGE_LENGTH`, so that the size check refuses them: ``int()`` of
    thousands of digits raises ValueError.
    """
    if not value.isdigit():
        return None
    return int(value) if len(value) <= MAX_LENGTH_DIGITS else HUGE_LENGTH


def header(headers: Headers, wanted: bytes) -> bytes | None:
    """The first value of a (lower-case) header."""
    for name, value in headers:
        if name == wanted:
            return value
    return None


def request_id_from(headers: Headers, key: str | None = None, query_string: bytes = b"") -> str:
    """The client's ``X-Request-Id`` when :func:`~keystile.core.ids.accepted_request_id` accepts it, else a new
    one. Besides ``key`` (the key the request carries, when known), the credentials in the request's own
    ``Authorization`` and ``X-API-Key`` headers and its ``api_key`` parameter never pass as its request id."""
    incoming = header(headers, b"x-request-id")
    if incoming is not None:
        text = accepted_request_id(incoming.decode("latin-1"), key)
        if text is not None and not _carries_credential(text, headers, query_string):
            return text
    return new_request_id()


def _carries_credential(text: str, headers: Headers, query_string: bytes) -> bool:
    """Whether ``text`` contains a credential of the request: only asked when a client sent a request id."""
    for name, value in headers:
        if name == b"authorization":
            credential = value.strip().rpartition(b" ")[2]
        elif name == b"x-api-key":
            credential = value.strip()
        else:
            continue
        if credential and credential.decode("latin-1") in text:
            return True
    if QUERY_PARAMETER.encode() in query_string:
        for param, given in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if param == QUERY_PARAMETER and given.strip() and given.strip() in text:
                return True
    return False


def new_request_id() -> str:
    return "req_" + secrets.token_hex(10)


async def read_body(receive: Receive, limit: int, expected: int | None = None) -> bytes:
    """Read a request body of at most ``limit`` bytes; ``expected`` is the declared Content-Length, if any.

    Raises :class:`TooLarge` as soon as the body grows past the limit (the rest is never read),
    :class:`IncompleteBody` when it ends before it is complete, and :class:`SlowBody` when it has not arrived by
    the body deadline (:mod:`keystile.http.deadline`, which finds requests waiting here).
    """
    try:
        message = await receive()
        if message["type"] != "http.request":
            raise IncompleteBody
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise too_large_body(limit)
        if not message.get("more_body", False) or len(body) == expected:
            # Granian hands over the whole body and then an empty last message; once Content-Length bytes are
            # here, waiting for that message costs a second trip through the server (measured: ~10 us a request).
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise IncompleteBody
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large_body(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    except asyncio.CancelledError:
        timeout_s = _cut_off()
        if timeout_s is None:
            raise
        # Raised unnamed: a local naming it would make a cycle (error, traceback, this frame) that keeps granian's
        # request body, and with it the connection, until the garbage collector runs.
        raise SlowBody(timeout_s) from None


def start_message(status: int, content_type: bytes, length: int, extra: Iterable[tuple[bytes, bytes]] = ()) -> Message:
    """An ``http.response.start`` message with a content type and length."""
    headers = [(b"content-type", content_type), (b"content-length", str(length).encode()), *extra]
    return {"type": "http.response.start", "status": status, "headers": headers}


def body_message(body: bytes) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": False}


async def send_bytes(
    send: Send, status: int, content_type: bytes, body: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a whole response in two messages."""
    await send(start_message(status, content_type, len(body), extra))
    await send(body_message(body))
