"""A small notes API behind Keystile, with Starlette and ``KeystileMiddleware`` (any ASGI app works alike).

Every route but ``/healthz`` needs a key with ``notes.read``; the middleware answers the others itself.
Configuration as in ``fastapi_app.py``::

    KEYSTILE_URL=... KEYSTILE_ROOT_KEY=... granian --interface asgi --factory examples.starlette_app:create_app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keystile.http.asgi import ASGIApp
from keystile.integrations import KeystileMiddleware, KeyVerifier, key_of, verifier_from_env


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def notes(request: Request) -> JSONResponse:
    key = key_of(request.scope)  # the key the middleware let this request in with
    assert key is not None
    return JSONResponse({"owner_id": key.owner_id, "key_id": key.key_id, "notes": []})


def create_app(verifier: KeyVerifier | None = None) -> ASGIApp:
    """The application, verifying with ``verifier`` (default: as the environment says)."""
    app = Starlette(routes=[Route("/healthz", health), Route("/notes", notes)])
    return KeystileMiddleware(app, verifier or verifier_from_env(), permissions="notes.read", exclude=["/healthz"])
