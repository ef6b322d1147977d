"""Every route of the HTTP API as a client method, declared once for ``Client`` and ``AsyncClient`` (SPEC I1, H).

Each method calls a :class:`~keystile.operations.Route` of the table the server serves, so its method, path,
body type and answer are the server's. Method names are the routes' names (the server's operation ids); path
parameters are positional, query parameters keyword-only, and a body is the request struct of
:mod:`keystile.schemas` (``KeyCreate``, ``KeyPatch``...). ``tests/client/test_coverage.py`` fails when a route
has no method here, or a method's parameters are not its route's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keystile.client._call import Operation, Parts, operation
from keystile.operations import (
    CHANGE_CREDITS,
    CREATE_API,
    CREATE_IDENTITY,
    CREATE_KEY,
    CREATE_KEYS_BULK,
    CREATE_PORTAL_SESSION,
    CREATE_ROOT_KEY,
    CREATE_WEBHOOK,
    DELETE_API,
    DELETE_IDENTITY,
    DELETE_KEY,
    DELETE_ROLE,
    DELETE_WEBHOOK,
    DOCS,
    GET_API,
    GET_IDENTITY,
    GET_KEY,
    GET_KEY_PLAINTEXT,
    GET_WEBHOOK,
    HEALTHZ,
    IMPORT_KEYS,
    ISSUE_TOKEN,
    JWKS,
    LIST_APIS,
    LIST_AUDIT,
    LIST_KEYS,
    LIST_LOGS,
    LIST_ROLES,
    LIST_ROOT_KEYS,
    LIST_WEBHOOK_DELIVERIES,
    LIST_WEBHOOKS,
    METRICS,
    OPENAPI_JSON,
    PUT_ROLE,
    RATELIMIT,
    READYZ,
    REROLL_KEY,
    RETRY_WEBHOOK_DELIVERY,
    REVOKE_KEY,
    REVOKE_ROOT_KEY,
    ROTATE_WEBHOOK_SECRET,
    UPDATE_API,
    UPDATE_IDENTITY,
    UPDATE_KEY,
    UPDATE_WEBHOOK,
    VERIFICATION_COUNTS,
    VERIFY_KEY,
    VERIFY_TOKEN,
)
from keystile.schemas import (
    ApiCreate,
    ApiPatch,
    BulkKeyCreate,
    CreditsChange,
    IdentityCreate,
    IdentityPatch,
    KeyCreate,
    KeyImport,
    KeyPatch,
    PortalSessionCreate,
    RatelimitRequest,
    RerollSpec,
    RoleSpec,
    RootKeyCreate,
    SecretRotation,
    TokenRequest,
    TokenVerifyRequest,
    VerifyRequest,
    WebhookCreate,
    WebhookPatch,
)


class Operations:
    """The API's operations; mixed into both clients."""

    # -- APIs (SPEC K1) ----------------------------------------------------------------------------------------

    @operation(CREATE_API)
    def create_api(spec: ApiCreate) -> Parts:
        """Create an API (a keyspace). Needs ``apis.write``."""
        return Parts(body=spec)

    @operation(LIST_APIS)
    def list_apis(*, cursor: str | None = None, limit: int | None = None) -> Parts:
        """One page of the APIs the root key may read, newest first."""
        return Parts(query={"cursor": cursor, "limit": limit})

    @operation(GET_API)
    def get_api(api_id: str) -> Parts:
        """One API."""
        return Parts({"api_id": api_id})

    @operation(UPDATE_API)
    def update_api(api_id: str, patch: ApiPatch) -> Parts:
        """Change an API: fields left UNSET stay, ``None`` resets to the default."""
        return Parts({"api_id": api_id}, body=patch)

    @operation(DELETE_API)
    def delete_api(api_id: str) -> Parts:
        """Delete an API with all its keys and roles (permanent)."""
        return Parts({"api_id": api_id})

    # -- keys (SPEC K4, R1-R3, L3) -----------------------------------------------------------------------------

    @operation(CREATE_KEY)
    def create_key(api_id: str, spec: KeyCreate | None = None) -> Parts:
        """Create a key; the answer's ``key`` is the plain text, shown this once."""
        return Parts({"api_id": api_id}, body=spec)

    @operation(CREATE_KEYS_BULK)
    def create_keys_bulk(api_id: str, spec: BulkKeyCreate) -> Parts:
        """Create up to 1,000 keys, all or nothing (a ``BadRequest`` names the failing ``index``)."""
        return Parts({"api_id": api_id}, body=spec)

    @operation(IMPORT_KEYS)
    def import_keys(api_id: str, body: KeyImport) -> Parts:
        """Import up to 1,000 existing keys (plain text or SHA-256 digests), all or nothing; keys the API holds
        already are skipped (``BadRequest`` names a failing ``index``, ``Conflict`` a key of another API)."""
        return Parts({"api_id": api_id}, body=body)

    @operation(LIST_KEYS)
    def list_keys(
        api_id: str,
        *,
        owner_id: str | None = None,
        enabled: bool | None = None,
        expired: bool | None = None,
        revoked: bool | None = None,
        stale: bool | None = None,
        q: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Parts:
        """One page of an API's keys, newest first, with filters (``q`` searches names and starts)."""
        query = {"owner_id": owner_id, "enabled": enabled, "expired": expired, "revoked": revoked, "stale": stale}
        return Parts({"api_id": api_id}, {**query, "q": q, "cursor": cursor, "limit": limit})

    @operation(VERIFY_KEY)
    def verify_key(request: VerifyRequest) -> Parts:
        """Verify a key: an answer with ``valid`` and ``code`` whatever the key; errors only for a bad
        request or root key. Never retried: a verification spends rate limits and credits."""
        return Parts(body=request)

    # -- API tokens (SPEC T1, T2) -------------------------------------------------------------------------------

    @operation(ISSUE_TOKEN)
    def issue_token(key: str, request: TokenRequest | None = None) -> Parts:
        """A signed token for ``key`` (sent as ``Authorization: Bearer`` instead of the root key); issuing is a
        verification of the key (limits and credits apply). Never retried."""
        return Parts(body=request, headers={"authorization": f"Bearer {key}"})

    @operation(VERIFY_TOKEN)
    def verify_token(request: TokenVerifyRequest) -> Parts:
        """Check a token online: an answer with ``valid`` and ``code`` whatever the token. Needs ``keys.verify``."""
        return Parts(body=request)

    @operation(JWKS)
    def jwks() -> Parts:
        """The public keys that sign tokens (a JSON Web Key Set)."""
        return Parts()

    @operation(GET_KEY)
    def get_key(key_id: str) -> Parts:
        """One key."""
        return Parts({"key_id": key_id})

    @operation(UPDATE_KEY)
    def update_key(key_id: str, patch: KeyPatch) -> Parts:
        """Change a key: fields left UNSET stay, ``None`` removes; ``meta`` and ``credits`` merge."""
        return Parts({"key_id": key_id}, body=patch)

    @operation(DELETE_KEY)
    def delete_key(key_id: str) -> Parts:
        """Delete a key permanently."""
        return Parts({"key_id": key_id})

    @operation(REVOKE_KEY, idempotent=True)
    def revoke_key(key_id: str) -> Parts:
        """Revoke a key (revoking again changes nothing, so this call is retried like a GET)."""
        return Parts({"key_id": key_id})

    @operation(REROLL_KEY)
    def reroll_key(key_id: str, spec: RerollSpec | None = None) -> Parts:
        """Replace a key with a new one of the same settings; the answer's ``key`` is the new plain text."""
        return Parts({"key_id": key_id}, body=spec)

    @operation(CHANGE_CREDITS)
    def change_credits(key_id: str, change: CreditsChange) -> Parts:
        """Set, add or subtract a key's credits (atomic on the server)."""
        return Parts({"key_id": key_id}, body=change)

    @operation(GET_KEY_PLAINTEXT)
    def get_key_plaintext(key_id: str) -> Parts:
        """A recoverable key in plain text (needs ``keys.decrypt``; audited as ``key.decrypt``)."""
        return Parts({"key_id": key_id})

    # -- identities (SPEC K5) ----------------------------------------------------------------------------------

    @operation(CREATE_IDENTITY)
    def create_identity(spec: IdentityCreate) -> Parts:
        """Create the identity of an owner: limits and credits shared by all of its keys."""
        return Parts(body=spec)

    @operation(GET_IDENTITY)
    def get_identity(owner_id: str) -> Parts:
        """The identity of an owner."""
        return Parts({"owner_id": owner_id})

    @operation(UPDATE_IDENTITY)
    def update_identity(owner_id: str, patch: IdentityPatch) -> Parts:
        """Change an identity (``meta`` and ``credits`` merge, ``None`` removes)."""
        return Parts({"owner_id": owner_id}, body=patch)

    @operation(DELETE_IDENTITY)
    def delete_identity(owner_id: str) -> Parts:
        """Delete an identity (its keys stay, without its limits and credits)."""
        return Parts({"owner_id": owner_id})

    # -- standalone rate limits (SPEC L4) ------------------------------------------------------------------------

    @operation(RATELIMIT)
    def ratelimit(request: RatelimitRequest) -> Parts:
        """Spend from a rate limit that is not tied to a key; ``success`` says whether the request passes."""
        return Parts(body=request)

    # -- roles (SPEC V3) ----------------------------------------------------------------------------------------

    @operation(PUT_ROLE, idempotent=True)
    def put_role(api_id: str, spec: RoleSpec) -> Parts:
        """Create a role or replace the one of that name (so repeating it is harmless)."""
        return Parts({"api_id": api_id}, body=spec)

    @operation(LIST_ROLES)
    def list_roles(api_id: str) -> Parts:
        """An API's roles."""
        return Parts({"api_id": api_id})

    @operation(DELETE_ROLE)
    def delete_role(api_id: str, name: str) -> Parts:
        """Delete a role and take it off every key that lists it."""
        return Parts({"api_id": api_id, "name": name})

    # -- root keys (SPEC K6) --------------------------------------------------------------------------------------

    @operation(CREATE_ROOT_KEY)
    def create_root_key(spec: RootKeyCreate) -> Parts:
        """Create a root key (never with a permission the caller lacks); ``key`` is shown this once."""
        return Parts(body=spec)

    @operation(LIST_ROOT_KEYS)
    def list_root_keys(*, cursor: str | None = None, limit: int | None = None) -> Parts:
        """One page of root keys, newest first."""
        return Parts(query={"cursor": cursor, "limit": limit})

    @operation(REVOKE_ROOT_KEY, idempotent=True)
    def revoke_root_key(root_key_id: str) -> Parts:
        """Revoke a root key (it may be the caller's own)."""
        return Parts({"root_key_id": root_key_id})

    # -- the customer portal (SPEC D2) ---------------------------------------------------------------------------

    @operation(CREATE_PORTAL_SESSION)
    def create_portal_session(request: PortalSessionCreate) -> Parts:
        """A one-time link that signs one owner of one API into the customer portal, within a policy."""
        return Parts(body=request)

    # -- webhooks (SPEC R5) ---------------------------------------------------------------------------------------

    @operation(CREATE_WEBHOOK)
    def create_webhook(spec: WebhookCreate) -> Parts:
        """Create a webhook endpoint; its signing ``secret`` is shown this once. Needs ``webhooks.write``."""
        return Parts(body=spec)

    @operation(LIST_WEBHOOKS)
    def list_webhooks(*, cursor: str | None = None, limit: int | None = None) -> Parts:
        """One page of webhook endpoints, newest first."""
        return Parts(query={"cursor": cursor, "limit": limit})

    @operation(GET_WEBHOOK)
    def get_webhook(webhook_id: str) -> Parts:
        """One webhook endpoint."""
        return Parts({"webhook_id": webhook_id})

    @operation(UPDATE_WEBHOOK)
    def update_webhook(webhook_id: str, patch: WebhookPatch) -> Parts:
        """Change a webhook endpoint: fields left UNSET stay."""
        return Parts({"webhook_id": webhook_id}, body=patch)

    @operation(DELETE_WEBHOOK)
    def delete_webhook(webhook_id: str) -> Parts:
        """Delete a webhook endpoint and its deliveries."""
        return Parts({"webhook_id": webhook_id})

    @operation(ROTATE_WEBHOOK_SECRET)
    def rotate_webhook_secret(webhook_id: str, spec: SecretRotation | None = None) -> Parts:
        """A new signing secret (shown this once); the old one signs beside it for the grace period."""
        return Parts({"webhook_id": webhook_id}, body=spec or SecretRotation())

    @operation(LIST_WEBHOOK_DELIVERIES)
    def list_webhook_deliveries(
        webhook_id: str, *, state: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> Parts:
        """One page of an endpoint's deliveries, newest first, with their attempts."""
        return Parts({"webhook_id": webhook_id}, query={"state": state, "cursor": cursor, "limit": limit})

    @operation(RETRY_WEBHOOK_DELIVERY)
    def retry_webhook_delivery(webhook_id: str, delivery_id: str) -> Parts:
        """Send a failed (or delivered) delivery again now."""
        return Parts({"webhook_id": webhook_id, "delivery_id": delivery_id})

    # -- audit, logs, analytics (SPEC A2, O2, O3) ---------------------------------------------------------------

    @operation(LIST_AUDIT)
    def list_audit(
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Parts:
        """One page of audit entries, newest first."""
        query = {"actor": actor, "action": action, "target": target, "since": since, "until": until}
        return Parts(query={**query, "cursor": cursor, "limit": limit})

    @operation(LIST_LOGS)
    def list_logs(
        *,
        api_id: str | None = None,
        key_id: str | None = None,
        owner_id: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Parts:
        """One page of verification events, newest first."""
        query = {"api_id": api_id, "key_id": key_id, "owner_id": owner_id, "outcome": outcome}
        return Parts(query={**query, "since": since, "until": until, "cursor": cursor, "limit": limit})

    @operation(VERIFICATION_COUNTS)
    def verification_counts(
        *,
        api_id: str | None = None,
        key_id: str | None = None,
        owner_id: str | None = None,
        outcome: str | None = None,
        granularity: str | None = None,
        group_by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Parts:
        """Verifications counted per minute, hour or day, grouped by outcome, key or owner."""
        query: dict[str, Any] = {"api_id": api_id, "key_id": key_id, "owner_id": owner_id, "outcome": outcome}
        return Parts(query={**query, "granularity": granularity, "group_by": group_by, "since": since, "until": until})

    # -- operations and documents ---------------------------------------------------------------------------------

    @operation(HEALTHZ)
    def healthz() -> Parts:
        """Liveness: ``Status(status="ok")``."""
        return Parts()

    @operation(READYZ)
    def readyz() -> Parts:
        """Readiness: ``Status(status="ready")``; raises ``ServiceUnavailable`` when storage or Redis is down."""
        return Parts()

    @operation(METRICS)
    def metrics() -> Parts:
        """The server's Prometheus metrics, as text."""
        return Parts()

    @operation(OPENAPI_JSON)
    def openapi_json() -> Parts:
        """The server's OpenAPI 3.1 document."""
        return Parts()

    @operation(DOCS)
    def docs() -> Parts:
        """The API reference page, as HTML."""
        return Parts()


NOT_FOR_CLIENTS: dict[tuple[str, str], str] = {
    ("POST", "/v1/leaks"): "called by GitHub's secret scanning, with a body GitHub signs, never with a root key",
    ("GET", "/v1/auth"): "called by a reverse proxy (nginx, Caddy, Traefik, Envoy) with the caller's own request",
    ("POST", "/oauth/token"): "called by OAuth 2.0 client libraries, with a form body and the key as client secret",
    ("POST", "/oauth/introspect"): "called by OAuth 2.0 resource servers with a form body (RFC 7662)",
    ("GET", "/.well-known/oauth-authorization-server"): "read by OAuth 2.0 client libraries (RFC 8414)",
}
"""Routes that have no client method, and why: they are not called by an application with a root key."""


def operations() -> dict[str, Operation[Any, Any]]:
    """Every operation by method name."""
    return {name: value for name, value in vars(Operations).items() if isinstance(value, Operation)}
