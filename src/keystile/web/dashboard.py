"""The admin dashboard (SPEC D1, S5), mounted by the server at ``/dashboard``.

Signed in with a root key that the sign-in form posts once: the session (in storage, shared by every process,
:mod:`keystile.service.websessions`) keeps the root key's id, and every request reads that key afresh and acts as
its principal through the same services, and so the same permission checks, as the HTTP API. Pages show only
what the root key may see; buttons for actions it lacks are not shown, and posting them anyway is refused by the
services (403, or 404 for an object out of scope).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from keystile.core.commands import KeyUpdate, NewApi, NewCredits, NewKey, NewRootKey
from keystile.core.models import AuditFilter, EventFilter, KeyFilter, WebSession
from keystile.core.timefmt import to_datetime
from keystile.core.verify import ALL_CODES
from keystile.core.webhooks import EVENT_TYPES, NewWebhook, WebhookUpdate
from keystile.errors import InvalidInput, KeystileError, NotFound, Unauthenticated
from keystile.http.answers import whole_seconds
from keystile.http.failures import FailureLimiter
from keystile.http.forwarded import TrustedProxies
from keystile.service import Keystile, Principal
from keystile.service.analytics import BUCKET_MS
from keystile.service.authz import ROOT_PERMISSIONS
from keystile.web import chart
from keystile.web.base import (
    STATIC_DIR,
    Form,
    Services,
    actor,
    check_csrf,
    clear_cookie,
    client_address,
    error_page,
    read_form,
    redirect,
    render,
    set_cookie,
)

SESSION = "dashboard"
SESSION_COOKIE = "keystile_session"
SIGN_IN_COOKIE = "keystile_sign_in"
PAGE = 50
RANGES: dict[str, tuple[str, str]] = {
    "hour": ("minute", "the last hour, by minute"),
    "day": ("hour", "the last 24 hours, by hour"),
    "month": ("day", "the last 30 days, by day"),
}

NAV: list[tuple[str, str, str]] = [
    ("APIs", "/apis", "apis.read"),
    ("Logs", "/logs", "analytics.read"),
    ("Identities", "/identities", "identities.read"),
    ("Audit log", "/audit", "audit.read"),
    ("Webhooks", "/webhooks", "webhooks.read|webhooks.write"),
    ("Root keys", "/root-keys", "root_keys.write"),
]
"""The navigation: label, path, the permissions (for any API; ``|`` between alternatives) that show it."""


class Viewer:
    """The signed-in root key as the templates see it: what it may do, and the session's CSRF token."""

    def __init__(self, principal: Principal, session: WebSession) -> None:
        self.principal = principal
        self.csrf = session.csrf
        self.id = principal.id

    def can(self, permission: str, api_id: str | None = None) -> bool:
        if api_id is not None:
            return self.principal.allows(permission, api_id)
        return self.principal.scope(permission) != frozenset()

    def nav(self) -> list[tuple[str, str]]:
        return [(label, path) for label, path, wanted in NAV if any(self.can(p) for p in wanted.split("|"))]


Page = Callable[[Request, Keystile, Viewer], Awaitable[Response]]


class Dashboard:
    def __init__(self, services: Services, failures: Callable[[], FailureLimiter] | None = None) -> None:
        self.services = services
        self.failures = failures
        """The per-address limit of failed key attempts, shared with forward auth (``None``: no limit)."""

    # -- plumbing -------------------------------------------------------------------------------------------

    def _cookie_path(self, request: Request) -> str:
        return request.scope.get("root_path", "") or "/"

    def page(self, handler: Page, *, post: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            ks = self.services()
            sid = request.cookies.get(SESSION_COOKIE)
            session = await ks.sessions.get(SESSION, sid)
            if session is None:
                return redirect(request, "/sign-in")
            try:
                principal = await ks.root_keys.principal(session.subject)
            except Unauthenticated:
                await ks.sessions.end(sid)
                response = redirect(request, "/sign-in")
                clear_cookie(response, request, SESSION_COOKIE, self._cookie_path(request))
                return response
            viewer = Viewer(principal, session)
            try:
                if post:
                    form = await read_form(request)
                    check_csrf(form, session.csrf)
                    request.state.form = form
                return await handler(request, ks, viewer)
            except KeystileError as exc:
                return error_page(request, exc, "dashboard/error.html", {"viewer": viewer})

        return endpoint

    # -- signing in and out ---------------------------------------------------------------------------------

    async def sign_in_page(self, request: Request) -> Response:
        if await self.services().sessions.get(SESSION, request.cookies.get(SESSION_COOKIE)) is not None:
            return redirect(request, "/apis")
        return self._sign_in_form(request, None, 200)

    def _sign_in_form(self, request: Request, error: str | None, status: int) -> Response:
        token = secrets.token_urlsafe(32)
        response = render(request, "dashboard/sign_in.html", {"csrf": token, "error": error, "viewer": None}, status)
        set_cookie(response, request, SIGN_IN_COOKIE, token, self._cookie_path(request))
        return response

    async def sign_in(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            check_csrf(form, request.cookies.get(SIGN_IN_COOKIE))
        except KeystileError as exc:
            return error_page(request, exc, "dashboard/error.html", {"viewer": None})
        ks = self.services()
        limiter = self.failures() if self.failures is not None else None
        address = client_address(request)
        if limiter is not None and (wait_ms := limiter.blocked_for(address)) > 0:
            # Before the key is looked at: a blocked client learns nothing, right key or not.
            return self._too_many_failures(request, wait_ms)
        try:
            principal = await ks.root_keys.authenticate(form.get("root_key"))
        except Unauthenticated:
            if limiter is not None and (wait_ms := await limiter.fail(address)) > 0:
                return self._too_many_failures(request, wait_ms)
            return self._sign_in_form(request, "That root key is unknown, revoked or expired.", 401)
        sid, _ = await ks.sessions.start(SESSION, principal.id)
        response = redirect(request, "/apis")
        path = self._cookie_path(request)
        set_cookie(response, request, SESSION_COOKIE, sid, path)
        clear_cookie(response, request, SIGN_IN_COOKIE, path)
        return response

    def _too_many_failures(self, request: Request, wait_ms: float) -> Response:
        seconds = whole_seconds(wait_ms)
        response = self._sign_in_form(
            request,
            f"Too many failed sign-ins from your address. Try again in {seconds} second{'s' if seconds != 1 else ''}.",
            429,
        )
        response.headers["Retry-After"] = str(seconds)
        return response

    async def sign_out(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        await ks.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = redirect(request, "/sign-in")
        clear_cookie(response, request, SESSION_COOKIE, self._cookie_path(request))
        return response

    async def home(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        nav = viewer.nav()
        return redirect(request, nav[0][1] if nav else "/root-keys")

    # -- APIs -----------------------------------------------------------------------------------------------

    async def apis(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        page = await ks.apis.list(viewer.principal, cursor=request.query_params.get("cursor"), limit=PAGE)
        return render(request, "dashboard/apis.html", {"viewer": viewer, "page": page})

    async def create_api(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        form: Form = request.state.form
        name = form.get("name")
        if not name:
            raise InvalidInput("an API needs a name", code="invalid_request")
        prefix = form.get("prefix")
        spec = NewApi(name=name, prefix=prefix) if prefix else NewApi(name=name)
        api = await ks.apis.create(actor(viewer.principal, request), spec)
        return redirect(request, f"/apis/{api.id}")

    async def api(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        api_id = request.path_params["api_id"]
        api = await ks.apis.get(viewer.principal, api_id, "keys.read")
        query = request.query_params
        status = query.get("status", "")
        stale_text = query.get("stale", "")
        where = KeyFilter(
            search=query.get("q") or None,
            owner_id=query.get("owner_id") or None,
            enabled={"enabled": True, "disabled": False}.get(status),
            revoked={"revoked": True, "active": False, "enabled": False, "disabled": False}.get(status),
            expired={"expired": True, "active": False}.get(status),
        )
        stale = {"stale": True, "fresh": False}.get(stale_text)
        page = await ks.keys.list(viewer.principal, api_id, where, stale=stale, cursor=query.get("cursor"), limit=PAGE)
        views = await ks.keys.views(page.items)
        filters = {
            "q": query.get("q", ""),
            "owner_id": query.get("owner_id", ""),
            "status": status,
            "stale": stale_text,
        }
        context = {"viewer": viewer, "api": api, "views": views, "page": page, "filters": filters, "now": ks.ctx.now()}
        return render(request, "dashboard/keys.html", context)

    # -- keys -----------------------------------------------------------------------------------------------

    async def new_key(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        api = await ks.apis.get(viewer.principal, request.path_params["api_id"], "keys.write")
        return render(request, "dashboard/key_new.html", {"viewer": viewer, "api": api})

    async def create_key(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        form: Form = request.state.form
        api_id = request.path_params["api_id"]
        permissions = form.get("permissions").replace(",", " ").split()
        credits = form.number("credits", maximum=10**12)
        days = form.number("expires_days", minimum=1, maximum=36_500)
        spec = NewKey(
            name=form.get("name") or None,
            owner_id=form.get("owner_id") or None,
            permissions=permissions,
            credits=NewCredits(credits) if credits is not None else None,
            expires_at=to_datetime(ks.ctx.now() + days * 86_400_000) if days else None,
        )
        key, plain = await ks.keys.create(actor(viewer.principal, request), api_id, spec)
        context = {"viewer": viewer, "key": key, "plain": plain, "heading": "Key created"}
        return render(request, "dashboard/key_created.html", context, 201)

    async def key(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        key = await ks.keys.get(viewer.principal, request.path_params["key_id"])
        view = await ks.keys.view(key)
        range_name = request.query_params.get("range", "day")
        if range_name not in RANGES:
            range_name = "day"
        context: dict[str, Any] = {
            "viewer": viewer,
            "view": view,
            "key": key,
            "range": range_name,
            "ranges": RANGES,
            "chart": None,
            "totals": {},
            "events": [],
            "now": ks.ctx.now(),
        }
        if viewer.can("analytics.read", key.api_id):
            granularity = RANGES[range_name][0]
            series = await ks.analytics.verifications(
                viewer.principal, EventFilter(key_id=key.id), granularity=granularity
            )
            size = BUCKET_MS[series.granularity]
            bars = chart.buckets(
                series.since, series.until, size, [(c.bucket, c.group, c.count) for c in series.counts]
            )
            totals: dict[str, int] = {}
            for bucket in bars:
                for outcome, count in bucket.counts.items():
                    totals[outcome] = totals.get(outcome, 0) + count
            context["chart"] = chart.svg(bars, size, f"Verifications of {key.name or key.id}, {RANGES[range_name][1]}")
            context["totals"] = totals
            logs = await ks.analytics.logs(viewer.principal, EventFilter(key_id=key.id), cursor=None, limit=10)
            context["events"] = logs.items
        return render(request, "dashboard/key.html", context)

    async def key_action(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        key_id = request.path_params["key_id"]
        action = request.path_params["action"]
        who = actor(viewer.principal, request)
        if action == "revoke":
            await ks.keys.revoke(who, key_id)
        elif action in ("disable", "enable"):
            await ks.keys.update(who, key_id, KeyUpdate(enabled=action == "enable"))
        elif action == "reroll":
            form: Form = request.state.form
            grace_hours = form.number("grace_hours", maximum=24 * 30) or 0
            key, plain = await ks.keys.reroll(who, key_id, grace_period_ms=grace_hours * 3_600_000)
            context = {"viewer": viewer, "key": key, "plain": plain, "heading": "Key rerolled"}
            return render(request, "dashboard/key_created.html", context, 201)
        else:
            raise NotFound("no such action", code="route_not_found")
        return redirect(request, f"/keys/{key_id}")

    # -- webhooks -------------------------------------------------------------------------------------------

    async def webhooks(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        page = await ks.webhooks.list(viewer.principal, cursor=request.query_params.get("cursor"), limit=PAGE)
        context = {"viewer": viewer, "page": page, "event_types": EVENT_TYPES}
        return render(request, "dashboard/webhooks.html", context)

    async def create_webhook(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        form: Form = request.state.form
        url = form.get("url")
        if not url:
            raise InvalidInput("a webhook needs a URL", code="invalid_request")
        api_ids = form.get("api_ids").replace(",", " ").split()
        spec = NewWebhook(
            url=url,
            events=form.all("event") or list(EVENT_TYPES),
            api_ids=api_ids or None,
            description=form.get("description") or None,
        )
        endpoint, secret = await ks.webhooks.create(actor(viewer.principal, request), spec)
        context = {"viewer": viewer, "endpoint": endpoint, "plain": secret, "heading": "Webhook created"}
        return render(request, "dashboard/webhook_created.html", context, 201)

    async def webhook(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        webhook_id = request.path_params["webhook_id"]
        endpoint = await ks.webhooks.get(viewer.principal, webhook_id)
        state = request.query_params.get("state") or None
        if state not in (None, "pending", "delivered", "failed"):
            state = None
        deliveries = await ks.webhooks.deliveries(
            viewer.principal, webhook_id, state=state, cursor=request.query_params.get("cursor"), limit=PAGE
        )
        context = {"viewer": viewer, "endpoint": endpoint, "deliveries": deliveries, "state": state or ""}
        return render(request, "dashboard/webhook.html", context)

    async def webhook_action(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        webhook_id = request.path_params["webhook_id"]
        action = request.path_params["action"]
        who = actor(viewer.principal, request)
        if action in ("disable", "enable"):
            await ks.webhooks.update(who, webhook_id, WebhookUpdate(enabled=action == "enable"))
        elif action == "delete":
            await ks.webhooks.delete(who, webhook_id)
            return redirect(request, "/webhooks")
        elif action == "rotate-secret":
            endpoint, secret = await ks.webhooks.rotate_secret(who, webhook_id)
            context = {"viewer": viewer, "endpoint": endpoint, "plain": secret, "heading": "Webhook secret rotated"}
            return render(request, "dashboard/webhook_created.html", context, 201)
        else:
            raise NotFound("no such action", code="route_not_found")
        return redirect(request, f"/webhooks/{webhook_id}")

    async def retry_delivery(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        webhook_id = request.path_params["webhook_id"]
        await ks.webhooks.retry(actor(viewer.principal, request), webhook_id, request.path_params["delivery_id"])
        return redirect(request, f"/webhooks/{webhook_id}")

    # -- logs, identities, audit, root keys -----------------------------------------------------------------

    async def logs(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        query = request.query_params
        outcome = query.get("outcome") or None
        where = EventFilter(api_id=query.get("api_id") or None, key_id=query.get("key_id") or None, outcome=outcome)
        page = await ks.analytics.logs(viewer.principal, where, cursor=query.get("cursor"), limit=PAGE)
        filters = {"api_id": where.api_id or "", "key_id": where.key_id or "", "outcome": outcome or ""}
        context = {"viewer": viewer, "page": page, "filters": filters, "outcomes": ALL_CODES}
        return render(request, "dashboard/logs.html", context)

    async def identities(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        query = request.query_params
        page = await ks.identities.list(
            viewer.principal, cursor=query.get("cursor"), limit=PAGE, search=query.get("q") or None
        )
        return render(request, "dashboard/identities.html", {"viewer": viewer, "page": page, "q": query.get("q", "")})

    async def audit(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        query = request.query_params
        where = AuditFilter(action=query.get("action") or None, target=query.get("target") or None)
        page = await ks.audit.list(viewer.principal, where, cursor=query.get("cursor"), limit=PAGE)
        report = await ks.audit.verify(viewer.principal)
        filters = {"action": where.action or "", "target": where.target or ""}
        return render(
            request, "dashboard/audit.html", {"viewer": viewer, "page": page, "report": report, "filters": filters}
        )

    async def root_keys(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        page = await ks.root_keys.list(viewer.principal, cursor=request.query_params.get("cursor"), limit=PAGE)
        context = {"viewer": viewer, "page": page, "permissions": ROOT_PERMISSIONS}
        return render(request, "dashboard/root_keys.html", context)

    async def create_root_key(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        form: Form = request.state.form
        permissions = form.all("permission") + form.get("scoped").replace(",", " ").split()
        spec = NewRootKey(permissions=permissions, name=form.get("name") or None)
        key, plain = await ks.root_keys.create(actor(viewer.principal, request), spec)
        context = {"viewer": viewer, "key": key, "plain": plain, "heading": "Root key created"}
        return render(request, "dashboard/key_created.html", context, 201)

    async def revoke_root_key(self, request: Request, ks: Keystile, viewer: Viewer) -> Response:
        await ks.root_keys.revoke(actor(viewer.principal, request), request.path_params["root_key_id"])
        return redirect(request, "/root-keys")


def dashboard_app(
    services: Services,
    extra_routes: list[BaseRoute] | None = None,
    proxies: TrustedProxies | None = None,
    failures: Callable[[], FailureLimiter] | None = None,
) -> Starlette:
    """The dashboard as an ASGI app, to be mounted (the server mounts it at ``/dashboard``). ``proxies``: whose
    ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed (the audit's client address, the ``Secure``
    cookie); ``failures``: the per-address limit of failed sign-ins (the server's, shared with forward auth)."""
    board = Dashboard(services, failures)

    def get(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        return board.page(handler)

    def post(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        return board.page(handler, post=True)

    routes: list[BaseRoute] = [
        Route("/", get(board.home)),
        Route("/sign-in", board.sign_in_page, methods=["GET"]),
        Route("/sign-in", board.sign_in, methods=["POST"]),
        Route("/sign-out", post(board.sign_out), methods=["POST"]),
        Route("/apis", get(board.apis), methods=["GET"]),
        Route("/apis", post(board.create_api), methods=["POST"]),
        Route("/apis/{api_id}", get(board.api), methods=["GET"]),
        Route("/apis/{api_id}/keys/new", get(board.new_key), methods=["GET"]),
        Route("/apis/{api_id}/keys", post(board.create_key), methods=["POST"]),
        Route("/keys/{key_id}", get(board.key), methods=["GET"]),
        Route("/keys/{key_id}/{action}", post(board.key_action), methods=["POST"]),
        Route("/logs", get(board.logs), methods=["GET"]),
        Route("/identities", get(board.identities), methods=["GET"]),
        Route("/audit", get(board.audit), methods=["GET"]),
        Route("/webhooks", get(board.webhooks), methods=["GET"]),
        Route("/webhooks", post(board.create_webhook), methods=["POST"]),
        Route("/webhooks/{webhook_id}", get(board.webhook), methods=["GET"]),
        Route("/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", post(board.retry_delivery), methods=["POST"]),
        Route("/webhooks/{webhook_id}/{action}", post(board.webhook_action), methods=["POST"]),
        Route("/root-keys", get(board.root_keys), methods=["GET"]),
        Route("/root-keys", post(board.create_root_key), methods=["POST"]),
        Route("/root-keys/{root_key_id}/revoke", post(board.revoke_root_key), methods=["POST"]),
        *(extra_routes or []),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = board
    app.state.proxies = proxies
    return app
