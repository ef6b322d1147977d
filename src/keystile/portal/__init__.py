"""The customer portal inside your own app (SPEC D2): your customers manage their own keys of one API, signed in
by your own login.

    from keystile import portal

    portal.mount(app, path="/account/keys", owner=lambda request: request.session.get("user_id"),
                 keystile=services, api_id="api_...", policy=portal.Policy(max_keys=5, permissions=("read",)))

``owner`` is given the request (a Starlette :class:`~starlette.requests.Request`) and returns the signed-in
customer's owner id, or ``None`` when nobody is signed in (then the pages answer 401); it may be a coroutine
function. ``keystile`` is an open :class:`keystile.service.Keystile` (or a function returning it, when the services
are opened later, at startup).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from keystile.service import Keystile
from keystile.service.portal import PortalPolicy
from keystile.web.portal import OwnerOf, portal_app

Policy = PortalPolicy


def mount(
    app: Any,
    *,
    path: str = "/account/keys",
    owner: OwnerOf,
    keystile: Keystile | Callable[[], Keystile],
    api_id: str,
    policy: PortalPolicy | None = None,
    title: str = "API keys",
    theme: Mapping[str, str] | None = None,
    return_url: str | None = None,
) -> Any:
    """Mount the portal's pages at ``path`` of ``app`` (anything with Starlette's ``mount(path, app)``: Starlette,
    FastAPI) and return the portal's own ASGI app (to route to it yourself in other frameworks)."""
    services: Callable[[], Keystile] = keystile if callable(keystile) else (lambda: keystile)
    portal = portal_app(
        services, owner=owner, api_id=api_id, policy=policy, title=title, theme=theme, return_url=return_url
    )
    if app is not None:
        app.mount(path, portal)
    return portal


__all__ = ["Policy", "PortalPolicy", "mount"]
