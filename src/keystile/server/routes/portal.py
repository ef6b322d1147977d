"""``POST /v1/portal/sessions`` (SPEC D2): a one-time link that signs a customer into the portal at ``/portal``."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from keystile.operations import CREATE_PORTAL_SESSION
from keystile.schemas import (
    PortalPolicySpec,
    PortalSessionCreate,
    portal_credits,
    portal_ratelimits,
    portal_session_out,
)
from keystile.server.routing import Call, Operation
from keystile.service.portal import PortalGrant, PortalPolicy

PORTAL_PATH = "/portal"


async def create_portal_session(call: Call) -> Response:
    body = await call.body(PortalSessionCreate)
    spec = body.policy or PortalPolicySpec()
    policy = PortalPolicy(
        max_keys=spec.max_keys,
        permissions=tuple(dict.fromkeys(spec.permissions)),
        ratelimits=portal_ratelimits(spec),
        credits=portal_credits(spec),
        max_expires_days=spec.max_expires_days,
    )
    grant = PortalGrant(body.api_id, body.owner_id, policy, body.return_url)
    link = await call.ks.portal.create_link(call.actor, grant, body.ttl_s)
    base = str(call.request.base_url).rstrip("/")
    url = f"{base}{PORTAL_PATH}/sign-in?token={quote(link.token)}"
    response = call.json(portal_session_out(url, link.expires_at), 201)
    response.headers["Cache-Control"] = "no-store"
    return response


OPERATIONS = [
    Operation(
        CREATE_PORTAL_SESSION,
        create_portal_session,
        "Create a one-time sign-in link to the customer portal for one owner of one API, within a policy",
        "Customer portal",
        "keys.write",
        errors=(400, 401, 403, 404),
    ),
]
