"""The routes, one module per resource; each exports ``OPERATIONS`` and :data:`OPERATIONS` gathers them."""

from __future__ import annotations

from keystile.server.routes import (
    analytics,
    apis,
    audit,
    auth,
    identities,
    keys,
    leaks,
    logs,
    oauth,
    ops,
    portal,
    ratelimit,
    roles,
    root_keys,
    tokens,
    webhooks,
)
from keystile.server.routing import Operation

OPERATIONS: list[Operation] = [
    *apis.OPERATIONS,
    *keys.OPERATIONS,
    *auth.OPERATIONS,
    *tokens.OPERATIONS,
    *oauth.OPERATIONS,
    *identities.OPERATIONS,
    *ratelimit.OPERATIONS,
    *roles.OPERATIONS,
    *root_keys.OPERATIONS,
    *audit.OPERATIONS,
    *logs.OPERATIONS,
    *analytics.OPERATIONS,
    *leaks.OPERATIONS,
    *portal.OPERATIONS,
    *webhooks.OPERATIONS,
    *ops.OPERATIONS,
]

__all__ = ["OPERATIONS"]
