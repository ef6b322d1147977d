"""The customer portal (SPEC D2): an API provider's customers manage their own keys.

Two ways in, one set of pages:

- **Links** (the server's ``/portal``): the provider asks ``POST /v1/portal/sessions`` for a one-time sign-in link
  for one owner of one API; following it starts a session (a random id in an HttpOnly, SameSite=Strict cookie;
  the grant stays in storage, shared by every process). A used or expired link is refused.
- **Mounted** (:func:`keystile.portal.mount`): inside the provider's own ASGI app, whose own login decides the
  owner through a function of the request; CSRF tokens are then a double-submit cookie.

Every action goes through :class:`~keystile.service.portal.PortalService`: the owner's keys of that API only
(another owner's key answers 404), within the grant's policy.
"""

from __future__ import annotations

import inspect
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from keystile.errors import KeystileError, NotFound, Unauthenticated
from keystile.http.forwarded import TrustedProxies
from keystile.service import Keystile
from keystile.service.analytics import BUCKET_MS
from keystile.service.portal import PortalGrant, PortalPolicy
from keystile.web import chart
from keystile.web.base import (
    SECURITY_HEADERS,
    STATIC_DIR,
    Form,
    Services,
    actor,
    check_csrf,
    clear_cookie,
    error_page,
    read_form,
    redirect,
    render,
    set_cookie,
)

SESSION_COOKIE = "keystile_portal"
CSRF_COOKIE = "keystile_portal_csrf"
RANGES: dict[str, tuple[str, str]] = {
    "hour": ("minute", "the last hour, by minute"),
    "day": ("hour", "the last 24 hours, by hour"),
    "month": ("day", "the last 30 days, by day"),
}
GRACE_CHOICES: tuple[tuple[int, str], ...] = (
    (0, "none: the old key stops at once"),
    (3_600_000, "1 hour"),
    (86_400_000, "24 hours"),
    (7 * 86_400_000, "7 days"),
)
OwnerOf = Callable[[Request], "str | Awaitable[str | None] | None"]
"""The provider's login: the owner id of the signed-in customer, or ``None`` when nobody is signed in."""

_CSS_NAME = re.compile(r"--[a-z0-9-]{1,40}")
_CSS_VALUE = re.compile(r"[#(),.%/:\w\s\"'-]{1,300}")


def theme_css(theme: Mapping[str, str]) -> str:
    """A stylesheet that sets the portal's CSS variables (``--ks-accent``, ``--ks-logo``...); values that could
    break out of a declaration are refused."""
    lines = []
    for name, value in theme.items():
        if not _CSS_NAME.fullmatch(name) or not _CSS_VALUE.fullmatch(value):
            raise ValueError(f"not a CSS variable and value this theme accepts: {name!r}")
        lines.append(f"  {name}: {value};")
    return ":root {\n" + "\n".join(lines) + "\n}\n"


def _used_link() -> Unauthenticated:
    return Unauthenticated("this sign-in link was used already, has expired or is unknown", code="invalid_link")


class Viewer:
    """The signed-in customer as the templates see them."""

    def __init__(self, grant: PortalGrant, csrf: str, linked: bool) -> None:
        self.grant = grant
        self.csrf = csrf
        self.linked = linked
        self.owner_id = grant.owner_id


Page = Callable[[Request, Keystile, Viewer], Awaitable[Response]]


class Portal:
    def __init__(
        self,
        services: Services,
        *,
        owner: OwnerOf | None = None,
        api_id: str | None = None,
        policy: PortalPolicy | None = None,
        title: str = "API keys",
        theme: Mapping[str, str] | None = None,
        return_url: str | None = None,
    ) -> None:
        if owner is not None and api_id is None:
            raise ValueError("a mounted portal needs the api_id whose keys it shows")
        self.services = services
        self.owner = owner
        self.api_id = api_id
        self.policy = policy or PortalPolicy()
        self.title = title
        self.return_url = return_url
        self.theme = theme_css(theme) if theme else None

    def _cookie_path(self, request: Request) -> str:
        return request.scope.get("root_path", "") or "/"

    def _context(self, viewer: Viewer | None, **more: Any) -> dict[str, Any]:
        return {"viewer": viewer, "title": self.title, "theme": self.theme is not None, **more}

    async def _viewer(self, request: Request) -> tuple[Viewer | None, str | None]:
        """The customer and, in mounted mode, a CSRF cookie to set (``None``: the one sent is kept)."""
        if self.owner is None:
            found = await self.services().portal.session(request.cookies.get(SESSION_COOKIE))
            return (Viewer(found[0], found[1], True) if found else None), None
        given = self.owner(request)
        owner = await given if inspect.isawaitable(given) else given
        if not owner:
            return None, None
        assert self.api_id is not None
        sent = request.cookies.get(CSRF_COOKIE)
        token = sent or secrets.token_urlsafe(32)
        grant = PortalGrant(self.api_id, str(owner), self.policy, self.return_url)
        return Viewer(grant, token, False), (None if sent else token)

    def page(self, handler: Page, *, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer, new_csrf = await self._viewer(request)
            if viewer is None:
                exc = Unauthenticated(
                    "you are not signed in: follow the sign-in link you were given, or sign in again",
                    code="not_signed_in",
                )
                return error_page(request, exc, "portal/error.html", self._context(None))
            try:
                if post:
                    form = await read_form(request)
                    check_csrf(form, None if new_csrf else viewer.csrf)
                    request.state.form = form
                response = await handler(request, self.services(), viewer)
            except KeystileError as exc:
                response = error_page(request, exc, "portal/error.html", self._context(viewer))
            if new_csrf:
                set_cookie(response, request, CSRF_COOKIE, new_csrf, self._cookie_path(request))
            return response

        return endpoint

    # -- signing in and out (links) -------------------------------------------------------------------------

    async def sign_in_page(self, request: Request) -> Response:
        """The page a sign-in link opens: a button that uses the link up. Opening the link does not, so that a mail
        scanner or a chat's link preview that fetches it leaves it to the customer."""
        token = request.query_params.get("token", "")
        if not await self.services().portal.link_valid(token):
            return error_page(request, _used_link(), "portal/error.html", self._context(None))
        return render(request, "portal/sign_in.html", self._context(None, token=token))

    async def sign_in(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            sid, _ = await self.services().portal.redeem(form.get("token"))
        except KeystileError as exc:
            return error_page(request, exc, "portal/error.html", self._context(None))
        response = redirect(request, "/")
        set_cookie(response, request, SESSION_COOKIE, sid, self._cookie_path(request))
        return response

    async def sign_out(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        await ks.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = render(request, "portal/signed_out.html", self._context(None, return_url=viewer.grant.return_url))
        clear_cookie(response, request, SESSION_COOKIE, self._cookie_path(request))
        return response

    async def theme_file(self, request: Request) -> Response:
        if self.theme is None:
            raise NotFound("no theme")  # the route exists only with a theme
        return Response(self.theme, media_type="text/css", headers={"Cache-Control": "no-cache"})

    # -- keys -----------------------------------------------------------------------------------------------

    async def home(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        keys = await ks.portal.keys(viewer.grant)
        policy = viewer.grant.policy
        live = [key for key in keys if key.rotated_to is None]
        may_create = policy.max_keys is None or len(live) < policy.max_keys
        context = self._context(viewer, keys=keys, policy=policy, may_create=may_create, now=ks.ctx.now())
        return render(request, "portal/keys.html", context)

    async def create(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        form: Form = request.state.form
        days = form.number("expires_days", minimum=1, maximum=36_500)
        key, plain = await ks.portal.create(
            viewer.grant, actor(viewer.grant.principal, request), form.get("name")[:200], form.all("permission"), days
        )
        return render(request, "portal/created.html", self._context(viewer, key=key, plain=plain, heading="New key"))

    async def key(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        key = await ks.portal.key(viewer.grant, request.path_params["key_id"])
        range_name = request.query_params.get("range", "day")
        if range_name not in RANGES:
            range_name = "day"
        series = await ks.portal.usage(viewer.grant, key.id, RANGES[range_name][0])
        size = BUCKET_MS[series.granularity]
        bars = chart.buckets(series.since, series.until, size, [(c.bucket, c.group, c.count) for c in series.counts])
        totals: dict[str, int] = {}
        for bucket in bars:
            for outcome, count in bucket.counts.items():
                totals[outcome] = totals.get(outcome, 0) + count
        context = self._context(
            viewer,
            key=key,
            chart=chart.svg(bars, size, f"Use of {key.name or key.start}, {RANGES[range_name][1]}"),
            totals=totals,
            range=range_name,
            ranges=RANGES,
            graces=GRACE_CHOICES,
            now=ks.ctx.now(),
        )
        return render(request, "portal/key.html", context)

    async def action(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        key_id = request.path_params["key_id"]
        form: Form = request.state.form
        who = actor(viewer.grant.principal, request)
        action = request.path_params["action"]
        if action == "rename":
            await ks.portal.rename(viewer.grant, who, key_id, form.get("name")[:200])
        elif action == "revoke":
            await ks.portal.revoke(viewer.grant, who, key_id)
            return redirect(request, "/")
        elif action == "roll":
            grace = form.number("grace_ms", maximum=7 * 86_400_000) or 0
            key, plain = await ks.portal.roll(viewer.grant, who, key_id, grace)
            context = self._context(viewer, key=key, plain=plain, heading="Key rolled", grace=grace)
            return render(request, "portal/created.html", context)
        else:
            raise NotFound("there is no such action", code="route_not_found")
        return redirect(request, f"/keys/{key_id}")


def portal_app(
    services: Services,
    *,
    owner: OwnerOf | None = None,
    api_id: str | None = None,
    policy: PortalPolicy | None = None,
    title: str = "API keys",
    theme: Mapping[str, str] | None = None,
    return_url: str | None = None,
    proxies: TrustedProxies | None = None,
) -> Starlette:
    """The portal as an ASGI app. Without ``owner`` customers sign in by one-time links (the server's
    ``/portal``); with it, ``owner(request)`` names the signed-in customer and ``api_id`` the API."""
    portal = Portal(
        services, owner=owner, api_id=api_id, policy=policy, title=title, theme=theme, return_url=return_url
    )

    def get(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        return portal.page(handler)

    def post(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        return portal.page(handler, post=True)

    routes: list[BaseRoute] = [
        Route("/", get(portal.home), methods=["GET"]),
        Route("/keys", post(portal.create), methods=["POST"]),
        Route("/keys/{key_id}", get(portal.key), methods=["GET"]),
        Route("/keys/{key_id}/{action}", post(portal.action), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if owner is None:
        routes += [
            Route("/sign-in", portal.sign_in_page, methods=["GET"]),
            Route("/sign-in", portal.sign_in, methods=["POST"]),
            Route("/sign-out", post(portal.sign_out), methods=["POST"]),
        ]
    if theme:
        routes.append(Route("/theme.css", portal.theme_file, methods=["GET"]))
    app = Starlette(routes=routes)
    app.state.portal = portal
    app.state.proxies = proxies
    return app


__all__ = ["SECURITY_HEADERS", "OwnerOf", "Portal", "portal_app", "theme_css"]
