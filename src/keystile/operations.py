"""The routes of the HTTP API as a caller sees them, declared once (SPEC H, I1).

A :class:`Route` holds what the server and its callers must agree on: the method, the path template, the request
body, the query parameters, the success status and the answer. The server serves and documents each route
(:mod:`keystile.server.routes` adds a handler, the permission and prose), the client makes a method of each
(:mod:`keystile.client._operations`); neither declares a path, method, body or answer of its own, so the two
cannot drift apart.

Only :mod:`keystile.schemas` and the core are imported here: the client imports this module, and importing the
client must not import Starlette, the server or the services.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_args

from keystile.core.models import MAX_AUDIT_CURSOR_DIGITS
from keystile.core.permissions import MAX_QUERY_LENGTH
from keystile.core.ports import Granularity, GroupBy
from keystile.core.verify import ALL_CODES
from keystile.schemas import (
    NO_NUL,
    ApiCreate,
    ApiOut,
    ApiPatch,
    AuditOut,
    BulkKeyCreate,
    BulkKeysCreated,
    CreditsChange,
    DeliveryOut,
    EventOut,
    IdentityCreate,
    IdentityOut,
    IdentityPatch,
    Jwks,
    KeyCreate,
    KeyCreated,
    KeyImport,
    KeyImportResult,
    KeyOut,
    KeyPatch,
    KeyPlaintext,
    LeakLabel,
    LeakReport,
    OAuthIntrospectForm,
    OAuthIntrospection,
    OAuthMetadata,
    OAuthTokenForm,
    OAuthTokenOut,
    Page,
    PortalSessionCreate,
    PortalSessionOut,
    RatelimitRequest,
    RatelimitResponse,
    RerollSpec,
    RoleList,
    RoleOut,
    RoleSpec,
    RootKeyCreate,
    RootKeyCreated,
    RootKeyOut,
    SecretRotation,
    Status,
    TokenOut,
    TokenRequest,
    TokenVerifyRequest,
    TokenVerifyResponse,
    VerificationSeries,
    VerifyRequest,
    VerifyResponse,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPatch,
)

T = TypeVar("T")
ParamKind = Literal["string", "integer", "boolean", "date-time"]
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
MERGE_PATCH_TYPES = (JSON, MERGE_PATCH)
"""What a route taking a JSON Merge Patch (RFC 7396) accepts; clients send ``MERGE_PATCH``."""
NoContent = type(None)
"""The answer of a route that answers without a body."""
MAX_COST = 10**9
"""The most credits one request may spend, as in ``POST /v1/keys/verify``."""
_PATH_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter: its name, kind (how it is sent, parsed and documented) and description."""

    name: str
    kind: ParamKind
    description: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    """What the OpenAPI document adds to the kind's schema: the bounds, pattern or values the service enforces."""


# eq=False: a route is one object of the table below, compared and hashed by identity.
@dataclass(frozen=True, slots=True, eq=False)
class Route(Generic[T]):
    """One route of the API: ``name`` is its operation id (and the client's method name), ``response`` the type
    its success answer decodes into (:data:`NoContent` for none, ``str`` for text in ``media_type``)."""

    name: str
    method: str
    path: str
    response: type[T]
    body: Any = None
    body_types: tuple[str, ...] = (JSON,)
    status: int = 200
    also: tuple[int, ...] = ()
    """Other success statuses that answer with ``response`` too."""
    query: tuple[Param, ...] = ()
    media_type: str = JSON
    key_param: str | None = None
    """The client method's parameter that carries the caller's own key, sent instead of the root key (a route
    authenticated by an API's key, such as issuing a token); the first after the path parameters."""

    @property
    def path_params(self) -> list[str]:
        """The names of the path's ``{parameters}``, in order."""
        return _PATH_PARAM.findall(self.path)


CURSOR = Param("cursor", "string", "The `next_cursor` of the previous page.")
LIMIT = Param("limit", "integer", "Items per page: 1 to 1,000, default 50.", {"minimum": 1, "maximum": 1000})
PAGE = (CURSOR, LIMIT)

# -- APIs (SPEC K1) -------------------------------------------------------------------------------------------------

CREATE_API = Route("create_api", "POST", "/v1/apis", ApiOut, body=ApiCreate, status=201)
LIST_APIS = Route("list_apis", "GET", "/v1/apis", Page[ApiOut], query=PAGE)
GET_API = Route("get_api", "GET", "/v1/apis/{api_id}", ApiOut)
UPDATE_API = Route("update_api", "PATCH", "/v1/apis/{api_id}", ApiOut, body=ApiPatch, body_types=MERGE_PATCH_TYPES)
DELETE_API = Route("delete_api", "DELETE", "/v1/apis/{api_id}", NoContent, status=204)

# -- keys (SPEC K3, K4, R1-R3, L3) and verification (SPEC V1, V5) ----------------------------------------------------

CREATE_KEY = Route("create_key", "POST", "/v1/apis/{api_id}/keys", KeyCreated, body=KeyCreate, status=201)
CREATE_KEYS_BULK = Route(
    "create_keys_bulk", "POST", "/v1/apis/{api_id}/keys/bulk", BulkKeysCreated, body=BulkKeyCreate, status=201
)
IMPORT_KEYS = Route("import_keys", "POST", "/v1/apis/{api_id}/keys/import", KeyImportResult, body=KeyImport)
KEY_FILTERS = (
    Param("owner_id", "string", "Only keys of this owner.", NO_NUL),
    Param("enabled", "boolean", "Only enabled (`true`) or disabled (`false`) keys."),
    Param("expired", "boolean", "Only expired (`true`) or unexpired (`false`) keys."),
    Param("revoked", "boolean", "Only revoked (`true`) or unrevoked (`false`) keys."),
    Param("stale", "boolean", "Only keys older (`true`) or younger (`false`) than the API's `max_key_age_days`."),
    Param("q", "string", "Search by name or by the key's start (`ks_3Fx9`).", NO_NUL),
)
LIST_KEYS = Route("list_keys", "GET", "/v1/apis/{api_id}/keys", Page[KeyOut], query=(*KEY_FILTERS, *PAGE))
VERIFY_KEY = Route("verify_key", "POST", "/v1/keys/verify", VerifyResponse, body=VerifyRequest)
GET_KEY = Route("get_key", "GET", "/v1/keys/{key_id}", KeyOut)
UPDATE_KEY = Route("update_key", "PATCH", "/v1/keys/{key_id}", KeyOut, body=KeyPatch, body_types=MERGE_PATCH_TYPES)
DELETE_KEY = Route("delete_key", "DELETE", "/v1/keys/{key_id}", NoContent, status=204)
REVOKE_KEY = Route("revoke_key", "POST", "/v1/keys/{key_id}/revoke", KeyOut)
REROLL_KEY = Route("reroll_key", "POST", "/v1/keys/{key_id}/reroll", KeyCreated, body=RerollSpec, status=201)
CHANGE_CREDITS = Route("change_credits", "POST", "/v1/keys/{key_id}/credits", KeyOut, body=CreditsChange)
GET_KEY_PLAINTEXT = Route("get_key_plaintext", "GET", "/v1/keys/{key_id}/plaintext", KeyPlaintext)
FORWARD_AUTH = Route(
    "forward_auth",
    "GET",
    "/v1/auth",
    NoContent,
    query=(
        Param("api_id", "string", "The API whose keys may pass (required unless KEYSTILE_AUTH_API_IDS names one)."),
        Param(
            "permissions",
            "string",
            "A permission query the key must satisfy, e.g. `docs.read`.",
            {"maxLength": MAX_QUERY_LENGTH},
        ),
        Param("cost", "integer", "Credits to spend (default 1).", {"minimum": 0, "maximum": MAX_COST}),
    ),
)

# -- API tokens (SPEC T1, T2) ---------------------------------------------------------------------------------------

ISSUE_TOKEN = Route("issue_token", "POST", "/v1/tokens", TokenOut, body=TokenRequest, key_param="key")
VERIFY_TOKEN = Route("verify_token", "POST", "/v1/tokens/verify", TokenVerifyResponse, body=TokenVerifyRequest)
JWKS = Route("jwks", "GET", "/.well-known/jwks.json", Jwks)

# -- OAuth 2.0 client credentials (SPEC T3) ------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"
OAUTH_TOKEN = Route("oauth_token", "POST", "/oauth/token", OAuthTokenOut, body=OAuthTokenForm, body_types=(FORM,))
OAUTH_INTROSPECT = Route(
    "oauth_introspect", "POST", "/oauth/introspect", OAuthIntrospection, body=OAuthIntrospectForm, body_types=(FORM,)
)
OAUTH_METADATA = Route("oauth_metadata", "GET", "/.well-known/oauth-authorization-server", OAuthMetadata)

# -- identities (SPEC K5), standalone rate limits (SPEC L4), roles (SPEC V3), root keys (SPEC K6) --------------------

CREATE_IDENTITY = Route("create_identity", "POST", "/v1/identities", IdentityOut, body=IdentityCreate, status=201)
GET_IDENTITY = Route("get_identity", "GET", "/v1/identities/{owner_id}", IdentityOut)
UPDATE_IDENTITY = Route(
    "update_identity",
    "PATCH",
    "/v1/identities/{owner_id}",
    IdentityOut,
    body=IdentityPatch,
    body_types=MERGE_PATCH_TYPES,
)
DELETE_IDENTITY = Route("delete_identity", "DELETE", "/v1/identities/{owner_id}", NoContent, status=204)
RATELIMIT = Route("ratelimit", "POST", "/v1/ratelimit", RatelimitResponse, body=RatelimitRequest)
PUT_ROLE = Route("put_role", "POST", "/v1/apis/{api_id}/roles", RoleOut, body=RoleSpec, status=201, also=(200,))
LIST_ROLES = Route("list_roles", "GET", "/v1/apis/{api_id}/roles", RoleList)
DELETE_ROLE = Route("delete_role", "DELETE", "/v1/apis/{api_id}/roles/{name}", NoContent, status=204)
CREATE_ROOT_KEY = Route("create_root_key", "POST", "/v1/root-keys", RootKeyCreated, body=RootKeyCreate, status=201)
LIST_ROOT_KEYS = Route("list_root_keys", "GET", "/v1/root-keys", Page[RootKeyOut], query=PAGE)
REVOKE_ROOT_KEY = Route("revoke_root_key", "POST", "/v1/root-keys/{root_key_id}/revoke", RootKeyOut)

# -- audit, logs, analytics (SPEC A2, O2, O3), leak reports (SPEC S3) ------------------------------------------------

LIST_AUDIT = Route(
    "list_audit",
    "GET",
    "/v1/audit",
    Page[AuditOut],
    query=(
        Param("actor", "string", "Only entries of this actor (a root key id, or `cli`).", NO_NUL),
        Param("action", "string", "Only entries of this action, such as `key.create`.", NO_NUL),
        Param("target", "string", "Only entries about this object id.", NO_NUL),
        Param("since", "date-time", "Only entries at or after this RFC 3339 time."),
        Param("until", "date-time", "Only entries before this RFC 3339 time."),
        Param(CURSOR.name, CURSOR.kind, CURSOR.description, {"pattern": f"^[0-9]{{1,{MAX_AUDIT_CURSOR_DIGITS}}}$"}),
        LIMIT,
    ),
)
_ANY_ID = {"minLength": 1, **NO_NUL}
EVENT_FILTERS = (
    Param("api_id", "string", "Only verifications of this API.", _ANY_ID),
    Param("key_id", "string", "Only verifications of this key.", _ANY_ID),
    Param("owner_id", "string", "Only verifications of keys of this owner.", _ANY_ID),
    Param("outcome", "string", "Only verifications with this code.", {"enum": list(ALL_CODES)}),
)
LIST_LOGS = Route(
    "list_logs",
    "GET",
    "/v1/logs",
    Page[EventOut],
    query=(
        *EVENT_FILTERS,
        Param("since", "date-time", "Only verifications at or after this RFC 3339 time."),
        Param("until", "date-time", "Only verifications before this RFC 3339 time."),
        Param(CURSOR.name, CURSOR.kind, CURSOR.description, {"pattern": "^evt_[0-9A-Za-z]{1,40}$"}),
        LIMIT,
    ),
)
_GRANULARITIES = get_args(Granularity)
VERIFICATION_COUNTS = Route(
    "verification_counts",
    "GET",
    "/v1/analytics/verifications",
    VerificationSeries,
    query=(
        *EVENT_FILTERS,
        Param(
            "granularity",
            "string",
            f"The bucket size: {', '.join(_GRANULARITIES)} (default `hour`).",
            {"enum": list(_GRANULARITIES)},
        ),
        Param(
            "group_by",
            "string",
            "Count per `outcome` (the default), per `key` or per `owner`.",
            {"enum": list(get_args(GroupBy))},
        ),
        Param(
            "since",
            "date-time",
            "Start of the range (widened to the start of its bucket). Default: 60 minutes, 24 hours or 30 days "
            "before `until`.",
        ),
        Param("until", "date-time", "End of the range, exclusive (widened to the end of its bucket); default now."),
    ),
)
REPORT_LEAKS = Route("report_leaks", "POST", "/v1/leaks", list[LeakLabel], body=list[LeakReport])

# -- the customer portal (SPEC D2) --------------------------------------------------------------------------------

CREATE_PORTAL_SESSION = Route(
    "create_portal_session", "POST", "/v1/portal/sessions", PortalSessionOut, body=PortalSessionCreate, status=201
)

# -- webhooks (SPEC R5) --------------------------------------------------------------------------------------------

CREATE_WEBHOOK = Route("create_webhook", "POST", "/v1/webhooks", WebhookCreated, body=WebhookCreate, status=201)
LIST_WEBHOOKS = Route("list_webhooks", "GET", "/v1/webhooks", Page[WebhookOut], query=PAGE)
GET_WEBHOOK = Route("get_webhook", "GET", "/v1/webhooks/{webhook_id}", WebhookOut)
UPDATE_WEBHOOK = Route(
    "update_webhook", "PATCH", "/v1/webhooks/{webhook_id}", WebhookOut, body=WebhookPatch, body_types=MERGE_PATCH_TYPES
)
DELETE_WEBHOOK = Route("delete_webhook", "DELETE", "/v1/webhooks/{webhook_id}", NoContent, status=204)
ROTATE_WEBHOOK_SECRET = Route(
    "rotate_webhook_secret", "POST", "/v1/webhooks/{webhook_id}/rotate-secret", WebhookCreated, body=SecretRotation
)
LIST_WEBHOOK_DELIVERIES = Route(
    "list_webhook_deliveries",
    "GET",
    "/v1/webhooks/{webhook_id}/deliveries",
    Page[DeliveryOut],
    query=(
        Param("state", "string", "Only deliveries in this state.", {"enum": ["pending", "delivered", "failed"]}),
        *PAGE,
    ),
)
RETRY_WEBHOOK_DELIVERY = Route(
    "retry_webhook_delivery", "POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", DeliveryOut
)

# -- operations and documents -------------------------------------------------------------------------------------

HEALTHZ = Route("healthz", "GET", "/healthz", Status)
READYZ = Route("readyz", "GET", "/readyz", Status)
METRICS = Route("metrics", "GET", "/metrics", str, media_type="text/plain; version=0.0.4")
OPENAPI_JSON = Route("openapi_json", "GET", "/openapi.json", dict[str, Any])
DOCS = Route("docs", "GET", "/docs", str, media_type="text/html")

ROUTES: tuple[Route[Any], ...] = (
    CREATE_API,
    LIST_APIS,
    GET_API,
    UPDATE_API,
    DELETE_API,
    CREATE_KEY,
    CREATE_KEYS_BULK,
    IMPORT_KEYS,
    LIST_KEYS,
    VERIFY_KEY,
    GET_KEY,
    UPDATE_KEY,
    DELETE_KEY,
    REVOKE_KEY,
    REROLL_KEY,
    CHANGE_CREDITS,
    GET_KEY_PLAINTEXT,
    FORWARD_AUTH,
    ISSUE_TOKEN,
    VERIFY_TOKEN,
    JWKS,
    OAUTH_TOKEN,
    OAUTH_INTROSPECT,
    OAUTH_METADATA,
    CREATE_IDENTITY,
    GET_IDENTITY,
    UPDATE_IDENTITY,
    DELETE_IDENTITY,
    RATELIMIT,
    PUT_ROLE,
    LIST_ROLES,
    DELETE_ROLE,
    CREATE_ROOT_KEY,
    LIST_ROOT_KEYS,
    REVOKE_ROOT_KEY,
    LIST_AUDIT,
    LIST_LOGS,
    VERIFICATION_COUNTS,
    REPORT_LEAKS,
    CREATE_PORTAL_SESSION,
    CREATE_WEBHOOK,
    LIST_WEBHOOKS,
    GET_WEBHOOK,
    UPDATE_WEBHOOK,
    DELETE_WEBHOOK,
    ROTATE_WEBHOOK_SECRET,
    LIST_WEBHOOK_DELIVERIES,
    RETRY_WEBHOOK_DELIVERY,
    HEALTHZ,
    READYZ,
    METRICS,
    OPENAPI_JSON,
    DOCS,
)
"""Every route of the API: the server serves each once, the client has a method for each it may call."""
