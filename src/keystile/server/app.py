"""The ASGI application: a raw-ASGI front that serves ``POST /v1/keys/verify`` and forward auth (``/v1/auth``)
itself and hands the rest to Starlette.

``create_app(settings)`` builds it (nothing happens at import time); ``app_from_env`` is the factory that
``granian --interface asgi --factory keystile.server.app:app_from_env`` calls in each worker. Size limits and
request ids are applied here, in plain ASGI, before any routing.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from keystile.config import Settings
from keystile.errors import InvalidInput, KeystileError, NotFound
from keystile.http.asgi import (
    PROBLEM_JSON,
    REQUEST_ID_SCOPE_KEY,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    declared_length,
    header_bytes,
    new_request_id,
    request_id_from,
    send_bytes,
    too_large_body,
    too_large_headers,
)
from keystile.http.deadline import start_body_deadline, stop_body_deadline
from keystile.http.problems import encode_problem, internal_problem, send_problem
from keystile.http.stop_signals import stop_on_first_signal
from keystile.http.transport import transport_security, with_header
from keystile.observability.logs import REQUEST_ID, log_request
from keystile.server.fastpath import VerifyEndpoint
from keystile.server.forward_auth import AUTH_PATH, ForwardAuthEndpoint
from keystile.server.openapi import Reference
from keystile.server.routes import OPERATIONS
from keystile.server.routing import Operation, endpoint, problem_response
from keystile.server.runtime import Runtime
from keystile.service import Keystile
from keystile.unkey import KEY_BODIES as UNKEY_KEY_BODIES
from keystile.unkey import PREFIX as UNKEY_PREFIX
from keystile.unkey import UnkeyApp
from keystile.web import dashboard_app, portal_app

log = logging.getLogger("keystile.server")

VERIFY_PATH = "/v1/keys/verify"


class KeystileApp:
    """The outer ASGI callable: transport security, verification fast path, limits, request ids, then Starlette."""

    __slots__ = ("auth", "hsts", "plain_http", "runtime", "starlette", "unkey", "verify")

    def __init__(self, runtime: Runtime, starlette: Starlette, verify: VerifyEndpoint) -> None:
        self.runtime = runtime
        self.starlette = starlette
        self.verify = verify
        self.auth = ForwardAuthEndpoint(runtime)
        # SPEC R6: Unkey's v2 API, over the same services (its own envelopes and error bodies).
        self.unkey = UnkeyApp(lambda: runtime.ks, runtime.max_body)
        # SPEC S1: HSTS on every answer over HTTPS; without TLS, a warning when keys come over plain HTTP.
        self.hsts, self.plain_http = transport_security(runtime.settings, frozenset({VERIFY_PATH, *UNKEY_KEY_BODIES}))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.starlette(scope, receive, send)  # lifespan
            return
        if self.plain_http is not None:
            self.plain_http(scope)
        elif self.hsts is not None:
            send = with_header(send, self.hsts)
        if scope["path"] == VERIFY_PATH and scope["method"] == "POST":
            await self.verify(scope, receive, send)  # does its own limits; a request id only on errors
            return
        path: str = scope["path"]
        if path[:8] == AUTH_PATH and (len(path) == 8 or path[8] == "/"):
            await self.auth(scope, receive, send)  # any method; answers never have a body
            return
        headers = scope["headers"]
        if path in UNKEY_KEY_BODIES:
            # The key these bodies carry is read after the request id is chosen, so a client's id cannot be checked
            # against it (as the verification fast path does): a fresh id, never one that could hold the key.
            request_id = scope[REQUEST_ID_SCOPE_KEY] = new_request_id()
        else:
            request_id = scope[REQUEST_ID_SCOPE_KEY] = request_id_from(headers)
        runtime = self.runtime
        error: KeystileError | None = None
        if header_bytes(headers) > runtime.max_headers:
            error = too_large_headers(runtime.max_headers)
        elif (declared_length(headers) or 0) > runtime.max_body:
            error = too_large_body(runtime.max_body)
        elif scope["path"] == VERIFY_PATH:
            error = InvalidInput(f"{scope['method']} is not allowed here; use POST", code="method_not_allowed")
        if error is not None and path.startswith(UNKEY_PREFIX):
            await self.unkey.refuse(send, error, request_id, tag=True)
            return
        if error is not None:
            await send_problem(send, error, request_id, [(b"allow", b"POST")] if scope["path"] == VERIFY_PATH else [])
            return
        await self._management(scope, receive, send, request_id)

    async def _management(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        tag = (b"x-request-id", request_id.encode())
        started = False
        status = 500
        began = time.perf_counter()
        # Log lines emitted while this request is served carry its id (SPEC O4).
        token = REQUEST_ID.set(request_id)

        async def send_tagged(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), tag]
            await send(message)

        app: ASGIApp = self.unkey if scope["path"].startswith(UNKEY_PREFIX) else self.starlette
        try:
            await app(scope, receive, send_tagged)
        except Exception as exc:
            # Handlers answer their own errors; this is a fault in the framework around them.
            log.error("unhandled error in request %s", request_id, exc_info=exc)
            if not started:
                _, problem, _ = internal_problem(request_id)
                await send_bytes(send, 500, PROBLEM_JSON, encode_problem(problem), [tag])
        finally:
            log_request(scope, status, time.perf_counter() - began, request_id)
            REQUEST_ID.reset(token)


def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (unknown path, wrong method) as problems."""
    request_id = request.scope.get(REQUEST_ID_SCOPE_KEY)
    if not isinstance(exc, HTTPException):
        return problem_response(Exception("framework fault"), request_id)
    error: KeystileError
    if exc.status_code == 404:
        # The path is not echoed: a client may have put a key in it by mistake.
        error = NotFound(f"there is no route {request.method} here; see /docs", code="route_not_found")
    elif exc.status_code == 405:
        error = InvalidInput(f"{request.method} is not allowed on this route", code="method_not_allowed")
    else:
        error = InvalidInput(str(exc.detail)[:200], code="bad_request")
    response = problem_response(error, request_id)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _server_error(request: Request, exc: Exception) -> Response:
    _, problem, _ = internal_problem(request.scope.get(REQUEST_ID_SCOPE_KEY))
    return Response(encode_problem(problem), 500, media_type="application/problem+json")


def _lifespan(runtime: Runtime) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = None
        if runtime.keystile is None:
            # The CLI's `serve` has migrated and bootstrapped already; a server never changes the schema.
            opened = runtime.keystile = await Keystile.open(runtime.settings, server=True)
            # A missing or wrong master key does not stop the server: it is said once, here, and only recoverable
            # keys are refused (SPEC K3).
            with contextlib.suppress(KeystileError):
                await opened.vault.check()
            if runtime.settings.webhooks:
                opened.start_webhooks()  # webhooks are delivered by servers (SPEC R5)
        deadline = start_body_deadline(runtime.settings.body_timeout_ms / 1000)
        try:
            yield
        finally:
            await stop_body_deadline(deadline)
            if opened is not None:
                runtime.keystile = None
                await opened.close()

    return lifespan


def create_app(settings: Settings, *, keystile: Keystile | None = None) -> ASGIApp:
    """The Keystile HTTP API as an ASGI app.

    With ``keystile`` given the app serves those services (tests, embedding); without, it opens them from
    ``settings`` at lifespan startup (without migrating) and closes them at shutdown.
    """
    runtime = Runtime(settings, keystile, Reference(OPERATIONS))
    verify = VerifyEndpoint(runtime)
    by_path: dict[str, list[Operation]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, []).append(op)
    routes: list[BaseRoute] = [
        Route(
            path,
            verify if path == VERIFY_PATH else endpoint(ops, runtime),
            methods=[op.method for op in ops],
        )
        for path, ops in by_path.items()
    ]
    # SPEC D1: the dashboard, over the same services (its own pages, sessions and errors).
    routes.append(
        Mount(
            "/dashboard",
            app=dashboard_app(lambda: runtime.ks, proxies=runtime.proxies, failures=runtime.failure_limiter),
        )
    )
    # SPEC D2: the customer portal, signed into by the links of POST /v1/portal/sessions.
    routes.append(Mount("/portal", app=portal_app(lambda: runtime.ks, proxies=runtime.proxies)))
    # The pages' roots without their slash: a redirect that names no host. Starlette's own slash redirects (off,
    # below) named whatever host the request's Host header said, and made clients send a POST body there again
    # (a key, for /v1/keys/verify/); a path with a slash too many is a 404 route_not_found instead, as any other.
    routes += [PageRoot(root, _to_slash, methods=["GET", "HEAD"]) for root in ("/dashboard", "/portal")]
    starlette = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=_lifespan(runtime),
    )
    starlette.router.redirect_slashes = False
    return KeystileApp(runtime, starlette, verify)


class PageRoot(Route):
    """The root of the dashboard's or the portal's pages without its slash: a redirect, not an API operation."""


async def _to_slash(request: Request) -> Response:
    return Response(status_code=307, headers={"Location": request.url.path + "/"})


def app_from_env() -> ASGIApp:
    """The app configured by ``KEYSTILE_*`` environment variables (granian's ``--factory`` target)."""
    stop_on_first_signal()
    app = create_app(Settings.from_env(os.environ))
    # What starting made (modules, routes, the API reference: some 40,000 objects) lives as long as the process:
    # moved out of the garbage collector's sight, so that its full collections, which hold the event loop, visit
    # only what serving made since (cache entries are never tracked: see keystile.core.verify._hit).
    gc.collect()
    gc.freeze()
    return app
