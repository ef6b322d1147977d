"""Operations: one per route, the :class:`~keystile.operations.Route` it serves with its handler and its
documentation; the router and the OpenAPI document are both built from them.

A handler receives a :class:`Call` (the request, the services, the authenticated actor, parsed query
parameters) and returns a response. The wrapper made by :func:`endpoint` authenticates, parses the query string
and turns every exception into a problem, so handlers hold nothing but the call to a service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from keystile.core.timefmt import from_rfc3339
from keystile.errors import InvalidInput
from keystile.http.asgi import REQUEST_ID_SCOPE_KEY, encode_json, read_body, request_id_from
from keystile.http.problems import problem_for_exception
from keystile.observability.logs import ROOT_KEY_ID_SCOPE_KEY
from keystile.operations import MERGE_PATCH_TYPES, NoContent, Param, Route
from keystile.schemas import decode
from keystile.server.auth import actor_for, authenticate
from keystile.server.runtime import Runtime
from keystile.service import Actor, Keystile

__all__ = ["Call", "Handler", "Operation", "Param", "endpoint", "parse_query", "problem_response"]

T = TypeVar("T")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

Handler = Callable[["Call"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One route as the server serves and documents it: the wire contract is the ``route``'s (shared with the
    client); the handler, the permission and the prose are the server's own."""

    route: Route[Any]
    handler: Handler
    summary: str
    tag: str
    permission: str | None = None
    """The root-key permission it needs (``None``: no root key at all)."""
    errors: tuple[int, ...] = (400, 401, 403, 404)
    description: str = ""
    responses: Mapping[str, Any] | None = None
    """The documented answers, verbatim, of a route that does not answer JSON (forward auth: headers only)."""

    @property
    def public(self) -> bool:
        return self.permission is None

    @property
    def operation_id(self) -> str:
        return self.route.name

    @property
    def method(self) -> str:
        return self.route.method

    @property
    def path(self) -> str:
        return self.route.path

    @property
    def body(self) -> Any:
        return self.route.body

    @property
    def body_types(self) -> tuple[str, ...]:
        return self.route.body_types

    @property
    def response(self) -> Any:
        """The answer's type, ``None`` when the answer has no body."""
        return None if self.route.response is NoContent else self.route.response

    @property
    def status(self) -> int:
        return self.route.status

    @property
    def also(self) -> tuple[int, ...]:
        return self.route.also

    @property
    def query(self) -> tuple[Param, ...]:
        return self.route.query

    @property
    def media_type(self) -> str:
        return self.route.media_type


class Call:
    """One request to a management route, as its handler sees it."""

    __slots__ = ("_actor", "params", "request", "request_id", "runtime")

    def __init__(self, request: Request, runtime: Runtime, request_id: str) -> None:
        self.request = request
        self.runtime = runtime
        self.request_id = request_id
        self.params: dict[str, Any] = {}
        self._actor: Actor | None = None

    @property
    def ks(self) -> Keystile:
        return self.runtime.ks

    @property
    def actor(self) -> Actor:
        """The authenticated caller (only on routes that need a root key)."""
        assert self._actor is not None, "a public route has no actor"
        return self._actor

    def path(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value

    async def body(self, schema: type[T]) -> T:
        """The JSON body validated against ``schema``; raises InvalidInput (400) or TooLarge (413)."""
        raw = await read_body(self.request.receive, self.runtime.max_body)
        return decode(raw, schema)

    async def merge_patch(self) -> dict[str, Any]:
        """A JSON Merge Patch body (RFC 7396): a JSON object, sent as JSON or merge-patch JSON."""
        content_type = self.request.headers.get("content-type")
        if content_type is not None and content_type.split(";")[0].strip().lower() not in MERGE_PATCH_TYPES:
            raise InvalidInput(
                "send the patch as application/merge-patch+json or application/json",
                code="unsupported_media_type",
            )
        return await self.body(dict[str, Any])

    def json(self, value: Any, status: int = 200) -> Response:
        return Response(encode_json(value), status, media_type="application/json")

    def no_content(self) -> Response:
        return Response(status_code=204)


def parse_query(params: tuple[Param, ...], request: Request) -> dict[str, Any]:
    """The declared query parameters, parsed; unknown or repeated ones are refused (a typo is an error)."""
    declared = {param.name: param for param in params}
    values: dict[str, Any] = {}
    for name, text in request.query_params.multi_items():
        param = declared.get(name)
        if param is None:
            raise InvalidInput(f"unknown query parameter {name[:64]!r}", code="unknown_parameter", field=name[:64])
        if name in values:
            raise InvalidInput(f"the query parameter {name} is given twice", code="invalid_parameter", field=name)
        values[name] = _parse(param, text)
    return values


def _parse(param: Param, text: str) -> Any:
    if param.kind == "integer":
        if text.isascii() and text.isdigit() and len(text) <= 12:
            return int(text)
        raise InvalidInput(f"{param.name} must be a whole number", code="invalid_parameter", field=param.name)
    if param.kind == "boolean":
        if text.lower() in _BOOLEANS:
            return _BOOLEANS[text.lower()]
        raise InvalidInput(f"{param.name} must be true or false", code="invalid_parameter", field=param.name)
    if param.kind == "date-time":
        try:
            return from_rfc3339(text)
        except ValueError as exc:
            raise InvalidInput(
                f"{param.name}: {exc}",  # what is wrong, never the text itself (a client may paste a key anywhere)
                code="invalid_parameter",
                field=param.name,
            ) from None
    return text


def problem_response(exc: BaseException, request_id: str | None) -> Response:
    """A problem+json response answering ``exc`` (unexpected exceptions are logged, never shown)."""
    status, problem, headers = problem_for_exception(exc, request_id)
    return Response(
        encode_json(problem),
        status,
        headers={name.decode(): value.decode("latin-1") for name, value in headers},
        media_type="application/problem+json",
    )


def endpoint(operations: Sequence[Operation], runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint serving the ``operations`` of one path (one per method)."""
    by_method = {op.method: op for op in operations}
    if "GET" in by_method:
        by_method.setdefault("HEAD", by_method["GET"])

    async def serve(request: Request) -> Response:
        scope = request.scope
        request_id = scope.get(REQUEST_ID_SCOPE_KEY) or request_id_from(scope["headers"])
        operation = by_method[request.method]  # Starlette has answered 405 for any other method
        call = Call(request, runtime, request_id)
        try:
            if not operation.public:
                principal = await authenticate(runtime.ks, scope["headers"])
                scope[ROOT_KEY_ID_SCOPE_KEY] = principal.id  # for the access log line
                call._actor = actor_for(principal, scope)
            call.params = parse_query(operation.query, request)
            return await operation.handler(call)
        except Exception as exc:
            return problem_response(exc, request_id)

    serve.__name__ = "_".join(op.operation_id for op in operations)
    return serve
