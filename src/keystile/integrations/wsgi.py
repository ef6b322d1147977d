"""API keys for WSGI applications: :class:`KeystileWSGIMiddleware` for any WSGI app, and the blocking
runner that the Flask decorator shares with it.

Verifiers are asyncio code, so a WSGI process runs them on one private event loop in a background thread
(:class:`BlockingVerifier`); each request waits for its answer there. The loop starts on first use, so that a
server that forks its workers after importing the application gives each worker its own.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Callable, Collection, Coroutine, Iterable
from typing import Any, TypeVar

from keystile.errors import KeystileError
from keystile.http.asgi import encode_json, request_id_from
from keystile.http.problems import problem_for_exception
from keystile.integrations._guard import VerifiedKey, authenticate
from keystile.integrations._verifiers import KeyVerifier

T = TypeVar("T")
ENVIRON_KEY = "keystile.key"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class BlockingVerifier:
    """A verifier for blocking code: runs ``verifier`` on a private event loop thread."""

    def __init__(self, verifier: KeyVerifier) -> None:
        self.verifier = verifier
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the loop and wait for its result (or exception)."""
        return asyncio.run_coroutine_threadsafe(work, self._running_loop()).result()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="keystile-verifier", daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
                # WSGI has no shutdown hook: flush what a local verifier holds (its events) at exit.
                atexit.register(self.close)
            return self._loop

    def authenticate(
        self, environ: dict[str, Any], *, permissions: str | None = None, api_id: str | None = None
    ) -> VerifiedKey:
        """The verified key of a WSGI request, or raise the KeystileError to answer it with."""
        return self.run(
            authenticate(
                self.verifier,
                environ_headers(environ),
                environ.get("QUERY_STRING", "").encode("latin-1"),
                environ.get("REMOTE_ADDR"),
                permissions=permissions,
                api_id=api_id,
            )
        )

    def close(self) -> None:
        """Close the verifier and stop the loop."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.verifier.aclose(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()


def environ_headers(environ: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The headers that carry keys, ASGI-style, from a WSGI environ."""
    headers = []
    for name, header in (("HTTP_AUTHORIZATION", b"authorization"), ("HTTP_X_API_KEY", b"x-api-key")):
        value = environ.get(name)
        if value is not None:
            headers.append((header, str(value).encode("latin-1")))
    return headers


def problem_answer(error: KeystileError, environ: dict[str, Any]) -> tuple[bytes, int, list[tuple[str, str]]]:
    """The body, status and headers answering ``error`` as problem+json."""
    query = str(environ.get("QUERY_STRING", "")).encode("latin-1")
    request_id = request_id_from(environ_headers(environ) + _request_id_header(environ), query_string=query)
    status, problem, headers = problem_for_exception(error, request_id)
    pairs = [(name.decode(), value.decode()) for name, value in headers]
    pairs += [("Content-Type", "application/problem+json"), ("X-Request-Id", request_id)]
    return encode_json(problem), status, pairs


def _request_id_header(environ: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    value = environ.get("HTTP_X_REQUEST_ID")
    return [(b"x-request-id", str(value).encode("latin-1"))] if value is not None else []


class KeystileWSGIMiddleware:
    """Verify the key of every request to a WSGI app except on ``exclude`` paths; the key reaches the app as
    ``environ["keystile.key"]``."""

    def __init__(
        self,
        app: WSGIApp,
        verifier: KeyVerifier | BlockingVerifier,
        *,
        permissions: str | None = None,
        api_id: str | None = None,
        exclude: Collection[str] = (),
    ) -> None:
        self.app = app
        self.blocking = verifier if isinstance(verifier, BlockingVerifier) else BlockingVerifier(verifier)
        self.permissions = permissions
        self.api_id = api_id
        self.exclude = tuple(exclude)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not any(path == rule or (rule.endswith("/") and path.startswith(rule)) for rule in self.exclude):
            try:
                environ[ENVIRON_KEY] = self.blocking.authenticate(
                    environ, permissions=self.permissions, api_id=self.api_id
                )
            except KeystileError as exc:
                body, status, headers = problem_answer(exc, environ)
                start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
                return [body]
        return self.app(environ, start_response)


_REASONS = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}
