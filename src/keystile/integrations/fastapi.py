"""FastAPI (and Starlette) integration: the dependency ``require_key(permissions=...)``.

::

    from keystile.integrations import verifier_from_env
    from keystile.integrations.fastapi import require_key, setup

    app = FastAPI()
    setup(app, verifier_from_env())

    @app.get("/notes")
    async def notes(key: Annotated[VerifiedKey, Depends(require_key("notes.read"))]) -> ...:
        ...  # key.owner_id, key.meta, key.permissions

A refused request raises :class:`KeyRejected`, which ``setup`` answers as problem+json (without ``setup`` FastAPI
still answers its status and headers). Under :class:`~keystile.integrations.KeystileMiddleware` the key it
verified is reused: only the permission query is checked again, locally, so nothing is spent twice.

Only Starlette is imported (FastAPI's requests are Starlette's), so this module costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from keystile.errors import KeystileError
from keystile.http.asgi import ASGIApp, Receive, Scope, Send, encode_json, request_id_from
from keystile.http.problems import problem_for_exception
from keystile.integrations._guard import VerifiedKey, authenticate, require
from keystile.integrations._verifiers import KeyVerifier
from keystile.integrations.asgi import closing, key_of
from keystile.schemas import Problem

_APP_STATE = "keystile_verifier"


class KeyRejected(HTTPException):
    """A request refused by :func:`require_key`; carries the problem it is answered with."""

    def __init__(self, error: KeystileError, request_id: str) -> None:
        status, problem, headers = problem_for_exception(error, request_id)
        answer_headers = {name.decode(): value.decode() for name, value in headers}
        super().__init__(status, problem.detail, {**answer_headers, "x-request-id": request_id})
        self.problem: Problem = problem


def _answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KeyRejected)
    return Response(
        encode_json(exc.problem), exc.status_code, headers=exc.headers, media_type="application/problem+json"
    )


class _CloseOnShutdown:
    def __init__(self, app: ASGIApp, verifier: KeyVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, closing(send, self.verifier) if scope["type"] == "lifespan" else send)


def setup(app: object, verifier: KeyVerifier) -> None:
    """Make ``verifier`` the one :func:`require_key` uses in ``app`` (a FastAPI or Starlette application), answer
    refusals as problem+json, and close the verifier when the application shuts down."""
    from starlette.applications import Starlette

    assert isinstance(app, Starlette), "setup() takes a FastAPI or Starlette application"
    setattr(app.state, _APP_STATE, verifier)
    app.add_exception_handler(KeyRejected, _answer)
    app.add_middleware(_CloseOnShutdown, verifier=verifier)


def require_key(
    permissions: str | None = None, *, api_id: str | None = None, verifier: KeyVerifier | None = None
) -> Callable[[Request], Awaitable[VerifiedKey]]:
    """A dependency that answers the request's verified key, or refuses the request (:class:`KeyRejected`).

    ``permissions`` is a permission query (``"notes.read AND notes.write"``); ``api_id`` accepts only keys of
    that API; ``verifier`` defaults to the one given to :func:`setup`.
    """

    async def verified_key(request: Request) -> VerifiedKey:
        scope = request.scope
        try:
            earlier = key_of(scope)
            if earlier is not None and api_id in (None, earlier.api_id):
                return require(earlier, permissions)
            client = scope.get("client")
            return await authenticate(
                verifier or _verifier_of(request),
                scope["headers"],
                scope.get("query_string", b""),
                client[0] if client else None,
                permissions=permissions,
                api_id=api_id,
            )
        except KeystileError as exc:
            raise KeyRejected(
                exc, request_id_from(scope["headers"], query_string=scope.get("query_string", b""))
            ) from None

    return verified_key


def _verifier_of(request: Request) -> KeyVerifier:
    found: KeyVerifier | None = getattr(request.app.state, _APP_STATE, None)
    if found is None:
        raise RuntimeError("require_key() needs setup(app, verifier) first, or its own verifier=")
    return found
