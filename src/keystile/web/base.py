"""What the dashboard and the portal share: templates, security headers, forms, CSRF, errors.

Every page is rendered on the server (Jinja2, autoescaped) and sent with a Content-Security-Policy that allows
scripts and styles from this app's own files only (no inline script, no inline style), ``Cache-Control:
no-store`` (pages show keys, and always a signed-in view), ``Referrer-Policy: no-referrer`` (a portal sign-in link
carries its token in the URL) and no framing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from keystile.errors import InvalidInput, KeystileError, TooLarge
from keystile.http.asgi import read_body
from keystile.http.forwarded import TrustedProxies
from keystile.http.problems import status_of
from keystile.service import Actor, Keystile, Principal
from keystile.web.sessions import same_token

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
MAX_FORM_BYTES = 65_536

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

Services = Callable[[], Keystile]
"""How a web app reaches the services: a function, since a server opens them only at startup."""


def _time(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["time"] = _time
ENV.filters["iso"] = _iso


def render(request: Request, template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    """A page: ``base`` (where this app is mounted) is known to every template."""
    base = request.scope.get("root_path", "")
    path = request.url.path
    page_path = path[len(base) :] if path.startswith(base) else path
    body = ENV.get_template(template).render(base=base, request_path=page_path, **context)
    return HTMLResponse(body, status, headers=SECURITY_HEADERS)


def redirect(request: Request, path: str, query: Mapping[str, str] | None = None) -> RedirectResponse:
    """303 See Other to ``path`` inside this app (after a form, the browser GETs the answer)."""
    url = request.scope.get("root_path", "") + path
    if query:
        url += "?" + urlencode(query)
    return RedirectResponse(url, 303, headers=SECURITY_HEADERS)


def _proxies(request: Request) -> TrustedProxies | None:
    found: TrustedProxies | None = getattr(request.app.state, "proxies", None)
    return found


def is_https(request: Request) -> bool:
    """Whether the browser speaks HTTPS: to this server, or to a trusted proxy in front of it that says so in
    ``X-Forwarded-Proto``."""
    if request.url.scheme == "https":
        return True
    proxies = _proxies(request)
    return proxies is not None and proxies.forwarded(request.scope, b"x-forwarded-proto") == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, path: str) -> None:
    """A session or CSRF cookie: HttpOnly, SameSite=Strict, Secure over HTTPS, scoped to the app's path."""
    response.set_cookie(
        name, value, path=path or "/", httponly=True, samesite="strict", secure=is_https(request), max_age=None
    )


def clear_cookie(response: Response, request: Request, name: str, path: str) -> None:
    response.delete_cookie(name, path=path or "/", httponly=True, samesite="strict", secure=is_https(request))


class Form:
    """A submitted ``application/x-www-form-urlencoded`` form."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str = "") -> str:
        values = self._fields.get(name)
        return values[0].strip() if values else default

    def all(self, name: str) -> list[str]:
        return [value.strip() for value in self._fields.get(name, []) if value.strip()]

    def number(self, name: str, *, minimum: int = 0, maximum: int = 10**12) -> int | None:
        text = self.get(name)
        if not text:
            return None
        if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= maximum:
            raise InvalidInput(f"{name} must be a whole number from {minimum} to {maximum}", code="invalid_request")
        return int(text)


async def read_form(request: Request) -> Form:
    """The form of a POST (other bodies are refused: the pages post nothing else)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidInput("send the form as application/x-www-form-urlencoded", code="invalid_form")
    try:
        body = await read_body(request.receive, MAX_FORM_BYTES)
    except TooLarge:
        raise TooLarge("the form is too large", code="body_too_large") from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the form is not UTF-8", code="invalid_form") from None
    return Form(parse_qs(text, keep_blank_values=True, max_num_fields=200))


class CsrfRefused(KeystileError):
    code = "csrf_refused"
    title = "Forbidden"


def check_csrf(form: Form, expected: str | None) -> None:
    if not same_token(form.get("csrf"), expected):
        raise CsrfRefused("the form is out of date or was not sent by this page: reload the page and try again")


def error_page(request: Request, exc: KeystileError, template: str, context: Mapping[str, Any]) -> HTMLResponse:
    status = 403 if isinstance(exc, CsrfRefused) else status_of(exc)
    detail = "something went wrong on the server" if status == 500 else exc.detail
    return render(request, template, {**context, "status": status, "detail": detail, "code": exc.code}, status)


def client_address(request: Request) -> str | None:
    """The client's address, as trusted proxies tell it."""
    proxies = _proxies(request)
    client = request.scope.get("client")
    return proxies.client(request.scope) if proxies is not None else (client[0] if client else None)


def actor(principal: Principal, request: Request) -> Actor:
    """Who acts, for the audit log: the client's address (as trusted proxies tell it) and ``User-Agent``."""
    agent = request.headers.get("user-agent")
    return Actor(principal, client_address(request), agent[:512] if agent else None)


Handler = Callable[[Request], Awaitable[Response]]
