"""The ASGI app of ``POST /v2/<namespace>.<operation>``: authenticate the root key, read the body, hand it to the
operation, and wrap what it answers in Unkey's envelope (``{meta: {requestId}, data}``, lists with
``pagination``) or its error body."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from keystile.http.asgi import (
    JSON,
    REQUEST_ID_SCOPE_KEY,
    Receive,
    Scope,
    Send,
    declared_length,
    encode_json,
    header,
    read_body,
    request_id_from,
    send_bytes,
)
from keystile.http.credentials import authorization_of, root_key
from keystile.observability.logs import ROOT_KEY_ID_SCOPE_KEY
from keystile.service import Actor, Keystile, Principal
from keystile.unkey import _keys, _resources
from keystile.unkey._call import Call, Operation
from keystile.unkey._errors import DOCS, ROUTE_NOT_FOUND_TYPE, UnkeyError, error_body

PREFIX = "/v2/"
PROBLEM_JSON = b"application/problem+json"
KEY_BODIES = frozenset({PREFIX + "keys.verifyKey", PREFIX + "keys.whoami"})
"""The paths whose request bodies carry a key (for the plain-HTTP warning)."""
_MAX_USER_AGENT = 512
_API = "unkey/data/api_not_found"
_IDENTITY = "unkey/data/identity_not_found"

OPERATIONS: Mapping[str, Operation] = {
    "keys.createKey": Operation(_keys.create_key, _API),
    "keys.verifyKey": Operation(_keys.verify_key),
    "keys.getKey": Operation(_keys.get_key),
    "keys.whoami": Operation(_keys.whoami),
    "keys.updateKey": Operation(_keys.update_key),
    "keys.deleteKey": Operation(_keys.delete_key),
    "keys.rerollKey": Operation(_keys.reroll_key),
    "keys.updateCredits": Operation(_keys.update_credits),
    "keys.addPermissions": Operation(_keys.add_permissions),
    "keys.removePermissions": Operation(_keys.remove_permissions),
    "keys.setPermissions": Operation(_keys.set_permissions),
    "keys.addRoles": Operation(_keys.add_roles),
    "keys.removeRoles": Operation(_keys.remove_roles),
    "keys.setRoles": Operation(_keys.set_roles),
    "keys.migrateKeys": Operation(_keys.migrate_keys, _API),
    "apis.createApi": Operation(_resources.create_api, _API),
    "apis.getApi": Operation(_resources.get_api, _API),
    "apis.listKeys": Operation(_resources.list_keys, _API),
    "apis.deleteApi": Operation(_resources.delete_api, _API),
    "identities.createIdentity": Operation(_resources.create_identity, _IDENTITY),
    "identities.getIdentity": Operation(_resources.get_identity, _IDENTITY),
    "identities.listIdentities": Operation(_resources.list_identities, _IDENTITY),
    "identities.updateIdentity": Operation(_resources.update_identity, _IDENTITY),
    "identities.deleteIdentity": Operation(_resources.delete_identity, _IDENTITY),
    "ratelimit.limit": Operation(_resources.ratelimit_limit),
}
"""Every operation offered, by the name Unkey's SDKs put after ``/v2/``."""


class UnkeyApp:
    """Serves the Unkey-compatible operations under ``/v2/``; ``services`` returns the opened services (and raises
    ``StorageError`` while they are not open yet)."""

    __slots__ = ("_max_body", "_services")

    def __init__(self, services: Callable[[], Keystile], max_body: int) -> None:
        self._services = services
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        request_id: str = scope.get(REQUEST_ID_SCOPE_KEY) or request_id_from(headers)
        path: str = scope["path"]
        operation = OPERATIONS.get(path[len(PREFIX) :]) if path.startswith(PREFIX) else None
        try:
            if operation is None:
                # The path is not echoed: a client may have put a key in it by mistake.
                raise UnkeyError(404, "Not Found", ROUTE_NOT_FOUND_TYPE, "there is no such route; see /docs")
            if scope["method"] != "POST":
                raise UnkeyError(
                    405, "Method Not Allowed", DOCS + "unkey/application/invalid_input", "use POST on this route"
                )
            ks = self._services()
            principal = await ks.root_keys.authenticate(root_key(authorization_of(headers)))
            scope[ROOT_KEY_ID_SCOPE_KEY] = principal.id  # for the access log line
            body = await read_body(receive, self._max_body, declared_length(headers))
            answer = await operation.handler(Call(ks, _actor(principal, scope), request_id, body))
        except Exception as exc:
            await self.refuse(send, exc, request_id, operation.not_found if operation else _API)
            return
        envelope: dict[str, object] = {"meta": {"requestId": request_id}}
        if answer.data is not None:
            envelope["data"] = answer.data
        if answer.paged:
            pagination: dict[str, object] = {"hasMore": answer.cursor is not None}
            if answer.cursor is not None:
                pagination["cursor"] = answer.cursor
            envelope["pagination"] = pagination
        await send_bytes(send, 200, JSON, encode_json(envelope))

    async def refuse(
        self, send: Send, exc: BaseException, request_id: str, not_found: str = _API, tag: bool = False
    ) -> None:
        """Answer ``exc`` in Unkey's error shape (``tag``: with the ``X-Request-Id`` header, which the server adds
        itself to the answers of :meth:`__call__`)."""
        status, payload = error_body(exc, request_id, not_found)
        extra = [(b"x-request-id", request_id.encode())] if tag else []
        if status == 408:  # the rest of a late body must not be read as the next request
            extra.append((b"connection", b"close"))
        # Unkey's SDKs expect a 429 as problem+json and every other error as JSON.
        await send_bytes(send, status, PROBLEM_JSON if status == 429 else JSON, encode_json(payload), extra)


def _actor(principal: Principal, scope: Scope) -> Actor:
    """Who acts, from where (for the audit log): the connection's client address and its ``User-Agent``."""
    client = scope.get("client")
    agent = header(scope["headers"], b"user-agent")
    return Actor(principal, client[0] if client else None, agent[:_MAX_USER_AGENT].decode("latin-1") if agent else None)
