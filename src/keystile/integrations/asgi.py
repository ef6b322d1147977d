"""``KeystileMiddleware``: API keys in front of any ASGI application (Starlette, FastAPI, Litestar...).

::

    app = KeystileMiddleware(app, verifier_from_env(), permissions="notes.read")

Requests without a good key are answered here (problem+json); the others reach the application with the key in
``scope["state"]["keystile_key"]`` (``request.state.keystile_key`` in Starlette and FastAPI). The verifier is
closed when the application shuts down (ASGI lifespan).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from keystile.errors import KeystileError
from keystile.http.asgi import ASGIApp, Message, Receive, Scope, Send, request_id_from
from keystile.http.problems import send_problem
from keystile.integrations._guard import VerifiedKey, authenticate
from keystile.integrations._verifiers import KeyVerifier

STATE_KEY = "keystile_key"
_POLICY_VIOLATION = 1008


def key_of(scope: Scope) -> VerifiedKey | None:
    """The key the middleware let this request in with (``None`` on an excluded path or without it)."""
    state = scope.get("state")
    found = state.get(STATE_KEY) if isinstance(state, dict) else None
    return found if isinstance(found, VerifiedKey) else None


class KeystileMiddleware:
    """Verify the key of every HTTP and WebSocket request, except on the ``exclude`` paths (exact, or a prefix
    ending in ``/``). ``permissions`` is a permission query every request's key must satisfy; ``api_id`` accepts
    only keys of that API."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: KeyVerifier,
        *,
        permissions: str | None = None,
        api_id: str | None = None,
        exclude: Collection[str] = (),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.permissions = permissions
        self.api_id = api_id
        self.exclude = tuple(exclude)

    def _excluded(self, path: str) -> bool:
        return any(path == rule or (rule.endswith("/") and path.startswith(rule)) for rule in self.exclude)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, closing(send, self.verifier))
            return
        if kind not in ("http", "websocket") or self._excluded(scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            key = await authenticate(
                self.verifier,
                scope["headers"],
                scope.get("query_string", b""),
                client[0] if client else None,
                permissions=self.permissions,
                api_id=self.api_id,
            )
        except KeystileError as exc:
            if kind == "websocket":
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": exc.code})
            else:
                await send_problem(
                    send, exc, request_id_from(scope["headers"], query_string=scope.get("query_string", b""))
                )
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state[STATE_KEY] = key
        await self.app(scope, receive, send)


def closing(send: Send, verifier: KeyVerifier) -> Send:
    """``send`` of a lifespan that closes ``verifier`` once the application has shut down."""

    async def send_then_close(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await verifier.aclose()
        await send(message)

    return send_then_close
