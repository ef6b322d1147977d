"""Python client of the Keystile HTTP API: ``Client`` (blocking) and ``AsyncClient`` (asyncio), over httpx.

Every route is a method named by its operation id (``create_key``, ``verify_key``, ``list_logs``...), taking path
parameters positionally, query parameters by keyword and bodies as the request structs of
:mod:`keystile.schemas`, and returning its response structs::

    from keystile import Client
    from keystile.schemas import ApiCreate, KeyCreate, VerifyRequest

    with Client("http://127.0.0.1:8787", root_key) as keystile:
        api = keystile.create_api(ApiCreate(name="notes"))
        created = keystile.create_key(api.id, KeyCreate(permissions=["notes.read"]))
        answer = keystile.verify_key(VerifyRequest(key=created.key, permissions="notes.read"))

Errors are the tree drawn in :mod:`keystile.client._errors`, part of :class:`keystile.KeystileError`.
"""

from __future__ import annotations

from keystile.client._async import AsyncClient
from keystile.client._config import ROOT_KEY_VARIABLE, URL_VARIABLE
from keystile.client._errors import (
    ApiError,
    AuthenticationFailed,
    BadRequest,
    ConflictError,
    NotFoundError,
    PayloadTooLarge,
    PermissionDenied,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    TransportError,
)
from keystile.client._sync import Client

__all__ = [
    "ROOT_KEY_VARIABLE",
    "URL_VARIABLE",
    "ApiError",
    "AsyncClient",
    "AuthenticationFailed",
    "BadRequest",
    "Client",
    "ConflictError",
    "NotFoundError",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServerError",
    "ServiceUnavailable",
    "TooManyRequests",
    "TransportError",
]
