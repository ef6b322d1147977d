"""Keystile in front of Python web applications.

- :class:`KeystileMiddleware` (:mod:`.asgi`): any ASGI application.
- :mod:`.fastapi`: the dependency ``require_key(permissions=...)`` (FastAPI, Starlette).
- :mod:`.flask`: the decorator ``@require_key(...)``; :mod:`.wsgi`: :class:`KeystileWSGIMiddleware` for any WSGI app.

Each verifies through a :class:`LocalVerifier` (the database, in process) or a :class:`RemoteVerifier` (a
server's ``POST /v1/keys/verify``); :func:`verifier_from_env` picks one from ``KEYSTILE_*`` variables. Both take
API tokens where they take keys; a :class:`TokenVerifier` alone takes tokens only (checked offline against a
server's key set, no root key needed).
"""

from __future__ import annotations

from keystile.integrations._guard import VerifiedKey, authenticate
from keystile.integrations._tokens import JwksCache, TokenVerifier
from keystile.integrations._verifiers import KeyVerifier, LocalVerifier, RemoteVerifier, verifier_from_env
from keystile.integrations.asgi import KeystileMiddleware, key_of
from keystile.integrations.wsgi import BlockingVerifier, KeystileWSGIMiddleware

__all__ = [
    "BlockingVerifier",
    "JwksCache",
    "KeyVerifier",
    "KeystileMiddleware",
    "KeystileWSGIMiddleware",
    "LocalVerifier",
    "RemoteVerifier",
    "TokenVerifier",
    "VerifiedKey",
    "authenticate",
    "key_of",
    "verifier_from_env",
]
