"""The browser faces of Keystile: the admin dashboard (SPEC D1) and the customer portal (SPEC D2).

Server-rendered pages (Jinja2) with one stylesheet and one small script (the copy button), over the same services
and permission checks as the HTTP API. :func:`dashboard_app` and :func:`portal_app` build ASGI apps; the server
mounts them at ``/dashboard`` and ``/portal``, and :func:`keystile.portal.mount` mounts the portal in a provider's
own app.
"""

from __future__ import annotations

from keystile.web.dashboard import dashboard_app
from keystile.web.portal import portal_app

__all__ = ["dashboard_app", "portal_app"]
