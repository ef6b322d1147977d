"""The request-building layer that ``Client`` and ``AsyncClient`` share: a :class:`Call` is one HTTP request
described (method, path, query, body, how to read the answer), and an :class:`Operation` is a descriptor that
turns a function building a call to a :class:`~keystile.operations.Route` into a method of either client.

The sync client's ``_send`` returns the answer, the async client's returns a coroutine of it; the descriptor's
overloads tell the type checker which is which, so every operation is written once (in :mod:`._operations`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, ParamSpec, Self, TypeVar, overload
from urllib.parse import quote

import httpx
import msgspec

from keystile.client._config import ClientConfig
from keystile.client._errors import ApiError, TransportError, error_class
from keystile.operations import MERGE_PATCH, NoContent, Route
from keystile.schemas import Problem

P = ParamSpec("P")
T = TypeVar("T")

# The request never reached the server, or the connection broke before an answer: safe to repeat an
# idempotent call, never a POST that may have been applied.
RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to the API and how to read its answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    content_type: str | None = None
    idempotent: bool = False
    extra_headers: Mapping[str, str] | None = field(default=None, repr=False)
    """Headers of this call only (the key of ``issue_token``, sent instead of the root key); never shown."""

    def headers(self) -> dict[str, str]:
        headers = {"content-type": self.content_type} if self.content_type is not None else {}
        if self.extra_headers:
            headers.update(self.extra_headers)
        return headers

    def answer(self, response: httpx.Response) -> T:
        """The decoded answer; raises the :class:`ApiError` that a non-2xx answer stands for."""
        if response.is_success:
            return self.read(response)
        raise error_from(response)


@dataclass(frozen=True, slots=True)
class Parts:
    """What an operation function returns: path parameters, query parameters (``None`` left out) and body."""

    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] | None = None


class SyncSender:
    """Base of clients whose operations return answers."""

    def _send(self, call: Call[T]) -> T:
        raise NotImplementedError


class AsyncSender:
    """Base of clients whose operations return awaitables of answers."""

    async def _send(self, call: Call[T]) -> T:
        raise NotImplementedError


class Operation(Generic[P, T]):
    """A method of both clients, built from a function that describes the request to its ``route``."""

    def __init__(self, route: Route[T], build: Callable[P, Call[T]]) -> None:
        self.route = route
        self.method = route.method
        self.path = route.path
        self.build = build
        self.body = route.body
        self.response = route.response
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__
        self.__signature__ = inspect.signature(build)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, obj: SyncSender, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncSender, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: Any, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build = self.build
        send = obj._send

        def method(*args: Any, **kwargs: Any) -> Any:
            return send(build(*args, **kwargs))

        # Kept on the instance (this descriptor defines no __set__), so later lookups skip this function.
        bound = obj.__dict__[self.__name__] = functools.wraps(build)(method)
        return bound


def operation(route: Route[T], *, idempotent: bool | None = None) -> Callable[[Callable[P, Parts]], Operation[P, T]]:
    """Declare the method that calls ``route``: the decorated function turns the method's arguments into the
    route's path parameters, query parameters and body; the method, path, body's media type and the type the
    answer decodes into are the route's. GET, DELETE, PATCH (a merge patch applied twice is applied once) are
    idempotent unless ``idempotent`` says otherwise."""
    method, path, body = route.method, route.path, route.body
    read = _reader(route.response)
    repeatable = method in {"GET", "DELETE", "PATCH"} if idempotent is None else idempotent
    content_type = MERGE_PATCH if MERGE_PATCH in route.body_types else route.body_types[0]

    def declare(build: Callable[P, Parts]) -> Operation[P, T]:
        def call(*args: P.args, **kwargs: P.kwargs) -> Call[T]:
            parts = build(*args, **kwargs)
            content = None if body is None else msgspec.json.encode(parts.body if parts.body is not None else {})
            return Call(
                method,
                path.format_map({name: quote(value, safe="") for name, value in parts.path.items()}),
                read,
                {name: _query_value(value) for name, value in parts.query.items() if value is not None},
                content,
                content_type if content is not None else None,
                repeatable,
                parts.headers,
            )

        return Operation(route, functools.wraps(build)(call))

    return declare


def _reader(response: Any) -> Callable[[httpx.Response], Any]:
    if response is NoContent:
        return lambda answer: None
    if response is str:
        return lambda answer: answer.text
    decode = msgspec.json.Decoder(response).decode
    return lambda answer: decode(answer.content)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a time for the API needs a time zone, such as datetime.now(UTC)")
        return value.isoformat()
    return str(value)


_decode_problem = msgspec.json.Decoder(Problem).decode


def error_from(response: httpx.Response) -> ApiError:
    """The error a non-2xx answer stands for: its problem+json body, or one made up from the status line when
    the answer is not a problem (a proxy's error page, say)."""
    request_id = response.headers.get("x-request-id")
    try:
        problem = _decode_problem(response.content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        problem = Problem(
            type="about:blank",
            title=response.reason_phrase or "HTTP error",
            status=response.status_code,
            detail=f"the server answered {response.status_code} without a problem body",
            code=f"http_{response.status_code}",
            request_id=request_id,
        )
    retry_after = response.headers.get("retry-after", "")
    # Whole seconds in ASCII digits (an HTTP date, "²" or "٣" are not): str.isdigit() alone lets "²" reach int().
    seconds = int(retry_after) if retry_after.isascii() and retry_after.isdigit() and len(retry_after) <= 10 else None
    return error_class(response.status_code)(problem, retry_after=seconds)


def transport_error(exc: httpx.TransportError, call: Call[Any]) -> TransportError:
    """httpx's exception as Keystile's, naming the request (never its headers: they hold the root key)."""
    code = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_failed"
    return TransportError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}", code=code)


def retry_delay(exc: httpx.TransportError, call: Call[Any], attempt: int, config: ClientConfig) -> float:
    """Seconds to wait before repeating ``call`` after attempt number ``attempt`` (0-based) failed with ``exc``:
    doubling from ``config.backoff``. Raises the :class:`TransportError` when the call is not to be repeated."""
    if isinstance(exc, RETRYABLE) and call.idempotent and attempt < config.retries:
        return float(config.backoff * 2**attempt)
    raise transport_error(exc, call) from exc
