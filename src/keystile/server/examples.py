"""Examples of the wire structs, for the OpenAPI document and ``/docs``.

Each example is an instance of the struct it illustrates, so it cannot name a field the struct lacks or give a
field a value of another type (mypy checks them), and it is encoded the way the server encodes answers. The
constraints that only decoding checks (bounds, patterns) and the document's own rules are checked by
``tests/server/test_openapi_examples.py``, which also sends every request example to the server.

The examples tell one story: an API ``weather``, a key of Alice's with a rate limit and credits, her identity.
Keys in plain text are shown cut short (``ks_3Fx9…``): an example must not look like a live key to a leak
scanner.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from keystile.schemas import (
    ApiCreate,
    ApiOut,
    ApiPatch,
    AttemptOut,
    AuditOut,
    BulkKeyCreate,
    BulkKeysCreated,
    CreditsChange,
    CreditsOut,
    CreditsPatch,
    CreditsSpec,
    DeliveryOut,
    EventOut,
    IdentityCreate,
    IdentityOut,
    IdentityPatch,
    Jwk,
    Jwks,
    KeyCreate,
    KeyCreated,
    KeyHashSpec,
    KeyImport,
    KeyImportEntry,
    KeyImportItem,
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
    PortalPolicySpec,
    PortalSessionCreate,
    PortalSessionOut,
    RateLimitOut,
    RatelimitRequest,
    RatelimitResponse,
    RateLimitSpec,
    RateLimitState,
    RefillOut,
    RefillSpec,
    RemainingOut,
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
    VerificationCount,
    VerificationSeries,
    VerifyCredits,
    VerifyRateLimit,
    VerifyRequest,
    VerifyResponse,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPatch,
)

API_ID = "api_QJbdNVHfzjSyDP1m3cDqOF"
KEY_ID = "key_0EvMSif02StR3D6eknb68r"
NEW_KEY_ID = "key_TF9KhwnybOoYe7LgqSRPvq"
ROOT_KEY_ID = "rk_IIRxjbrhPLKTAAheKrpF32"
CREATED = "2026-11-28T09:12:44.031Z"
LATER = "2026-11-28T09:40:02.518Z"
ROLE = "forecaster"
SIGNING_KEY_ID = "sk_0EvMSif02StR3D6eknb68r"

_TOKEN = "eyJhbGciOiJFZERTQSIsImtpZCI6InNrXzBFdk1…"  # noqa: S105 - cut short, as keys are
_LIMIT = RateLimitSpec(name="search", limit=100, duration_ms=60_000, auto_apply=False)
_LIMIT_OUT = RateLimitOut("search", 100, 60_000, False)
_KEY_CREATE = KeyCreate(
    name="alice laptop",
    owner_id="alice",
    meta={"plan": "pro"},
    permissions=["forecast.read"],
    roles=[ROLE],
    credits=CreditsSpec(remaining=1000, refill=RefillSpec(amount=1000, interval="monthly", day=1)),
    ratelimits=[_LIMIT],
)
_KEY_FIELDS: dict[str, Any] = {
    "id": KEY_ID,
    "api_id": API_ID,
    "start": "ks_3Fx9",
    "name": "alice laptop",
    "owner_id": "alice",
    "meta": {"plan": "pro"},
    "permissions": ["forecast.read"],
    "roles": [ROLE],
    "created_at": CREATED,
    "updated_at": CREATED,
    "expires_at": None,
    "enabled": True,
    "revoked_at": None,
    "last_used_at": None,
    "credits": CreditsOut(1000, RefillOut(1000, "monthly", 1)),
    "ratelimits": [_LIMIT_OUT],
    "ip_allowlist": [],
    "rotated_from": None,
    "rotated_to": None,
    "stale": False,
}
_KEY = KeyOut(**_KEY_FIELDS)
_KEY_CREATED = KeyCreated(**_KEY_FIELDS, key="ks_3Fx9…")
_API = ApiOut(
    id=API_ID,
    name="weather",
    prefix="ks",
    created_at=CREATED,
    updated_at=CREATED,
    default_ratelimits=[RateLimitOut("api", 1000, 60_000, True)],
    max_key_age_days=90,
    recoverable=False,
    ip_allowlist=[],
    expire_stale_after_days=None,
)
_ROOT_KEY_FIELDS: dict[str, Any] = {
    "id": ROOT_KEY_ID,
    "start": "ks_root_Zt4q",
    "name": "verifier",
    "permissions": ["keys.verify"],
    "created_at": CREATED,
    "expires_at": None,
    "revoked_at": None,
    "last_used_at": None,
}
_ROLE = RoleOut(API_ID, ROLE, ["forecast.read", "forecast.history"], CREATED, CREATED)
_IDENTITY = IdentityOut(
    id="idn_Ej1PlXnhZRYYuDGZbJMNql",
    owner_id="alice",
    meta={"company": "Acme"},
    ratelimits=[RateLimitOut("api", 1000, 60_000, True)],
    credits=CreditsOut(50_000, None),
    created_at=CREATED,
    updated_at=CREATED,
)
_EVENT = EventOut(
    id="evt_Xxf0plbrsPuAMv6GDcYF6H",
    ts=LATER,
    request_id="req_9f1c2e7a40b3d8e1a6c5",
    api_id=API_ID,
    key_id=KEY_ID,
    owner_id="alice",
    outcome="VALID",
    ip="203.0.113.7",
    tags=["search"],
    latency_us=9,
)

_WEBHOOK_FIELDS: dict[str, Any] = {
    "id": "whk_0EvMSif02StR3D6eknb68r",
    "url": "https://hooks.example.com/keystile",
    "events": ["key.created", "key.revoked", "key.leaked", "credits.exhausted"],
    "api_ids": [API_ID],
    "enabled": True,
    "description": "billing service",
    "credits_low_percent": 10,
    "created_at": CREATED,
    "updated_at": CREATED,
    "previous_secret_valid_until": None,
}
_DELIVERY = DeliveryOut(
    id="dlv_0EvMSif02StR3D6eknb68r",
    message_id="msg_0EvMSif02StR3D6eknb68r",
    type="key.revoked",
    state="delivered",
    attempts=2,
    next_attempt_at=None,
    last_status=200,
    created_at=LATER,
    updated_at=LATER,
    attempt_log=[
        AttemptOut(id="att_0EvMSif02StR3D6eknb68r", at=LATER, status=500, latency_ms=31, response="", error=None),
        AttemptOut(id="att_0EvMSif02StR3D6eknb69r", at=LATER, status=200, latency_ms=12, response="ok", error=None),
    ],
)

EXAMPLES: dict[Any, Any] = {
    # -- APIs
    ApiCreate: ApiCreate(
        name="weather",
        default_ratelimits=[RateLimitSpec(name="api", limit=1000, duration_ms=60_000)],
        max_key_age_days=90,
    ),
    ApiPatch: ApiPatch(name="weather (production)", max_key_age_days=60),
    ApiOut: _API,
    Page[ApiOut]: Page[ApiOut]([_API], None),
    # -- keys
    KeyCreate: _KEY_CREATE,
    BulkKeyCreate: BulkKeyCreate(
        keys=[_KEY_CREATE, KeyCreate(name="bob phone", owner_id="bob", permissions=["forecast.read"])]
    ),
    KeyPatch: KeyPatch(meta={"plan": "enterprise"}, credits=CreditsPatch(remaining=5000)),
    KeyOut: _KEY,
    KeyCreated: _KEY_CREATED,
    BulkKeysCreated: BulkKeysCreated([_KEY_CREATED]),
    KeyImport: KeyImport(
        keys=[
            KeyImportEntry(key="sk_live_51HxT2a9Qd7LmZ8pWv3Rk", name="alice laptop", owner_id="alice"),
            KeyImportEntry(hash="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", owner_id="bob"),
            KeyImportEntry(
                hash=KeyHashSpec(value="LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", variant="sha256_base64"),
                external_id="carol",
                permissions=["forecast.read"],
            ),
        ]
    ),
    KeyImportResult: KeyImportResult(
        imported=2,
        skipped=1,
        items=[
            KeyImportItem(0, "key_0EvMSif02StR3D6eknb68r", "imported"),
            KeyImportItem(1, "key_0EvMSif02StR3D6eknb68s", "imported"),
            KeyImportItem(2, "key_0EvMPq7Ue1cY2hJb1xVw4T", "skipped"),
        ],
    ),
    Page[KeyOut]: Page[KeyOut]([_KEY], "key_0EvMSif02StR3D6eknb68r"),
    KeyPlaintext: KeyPlaintext(key_id=KEY_ID, key="ks_3Fx9…"),
    RerollSpec: RerollSpec(grace_period_ms=3_600_000, expires_at=datetime(2031, 1, 1, tzinfo=UTC)),
    CreditsChange: CreditsChange(op="add", amount=500),
    # -- verification
    VerifyRequest: VerifyRequest(
        key="ks_3Fx9…",
        api_id=API_ID,
        permissions="forecast.read AND (forecast.history OR admin)",
        credits=VerifyCredits(cost=1),
        ratelimits=[VerifyRateLimit(name="search", cost=2)],
        ip="203.0.113.7",
        tags=["search"],
    ),
    VerifyResponse: VerifyResponse(
        valid=True,
        code="VALID",
        key_id=KEY_ID,
        api_id=API_ID,
        name="alice laptop",
        owner_id="alice",
        meta={"plan": "pro"},
        permissions=["forecast.read", "forecast.history"],
        roles=[ROLE],
        expires_at=None,
        credits=RemainingOut(999),
        ratelimits=[RateLimitState("search", 100, 98, LATER)],
    ),
    # -- API tokens
    TokenRequest: TokenRequest(ttl_s=900, permissions=["forecast.read"]),
    TokenOut: TokenOut(
        token=_TOKEN,
        token_type="Bearer",  # noqa: S106 - the name of a scheme
        expires_in=900,
        expires_at="2026-11-28T09:27:44Z",
        scope="forecast.read",
    ),
    TokenVerifyRequest: TokenVerifyRequest(token=_TOKEN),
    TokenVerifyResponse: TokenVerifyResponse(
        valid=True,
        code="VALID",
        key_id=KEY_ID,
        api_id=API_ID,
        sub="alice",
        scope="forecast.read",
        exp=1795858064,
        expires_at="2026-11-28T09:27:44Z",
        iat=1795857164,
        jti="tok_0EvMSif02StR3D6eknb68r",
        kid=SIGNING_KEY_ID,
    ),
    Jwks: Jwks(
        [
            Jwk(
                kty="OKP",
                crv="Ed25519",
                x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                kid=SIGNING_KEY_ID,
                alg="EdDSA",
                use="sig",
            )
        ]
    ),
    # -- OAuth 2.0 client credentials
    OAuthTokenForm: OAuthTokenForm(
        grant_type="client_credentials",
        client_id=KEY_ID,
        client_secret="ks_3Fx9…",  # noqa: S106 - cut short, as keys are
        scope="forecast.read",
    ),
    OAuthTokenOut: OAuthTokenOut(
        access_token=_TOKEN,
        token_type="Bearer",  # noqa: S106 - the name of a scheme
        expires_in=900,
        scope="forecast.read",
    ),
    OAuthIntrospectForm: OAuthIntrospectForm(token=_TOKEN),
    OAuthIntrospection: OAuthIntrospection(
        active=True,
        scope="forecast.read",
        client_id=KEY_ID,
        sub="alice",
        exp=1795858064,
        iat=1795857164,
        iss="https://keys.example.com",
        aud=API_ID,
        jti="tok_0EvMSif02StR3D6eknb68r",
        token_type="Bearer",  # noqa: S106 - the name of a scheme
    ),
    OAuthMetadata: OAuthMetadata(
        issuer="https://keys.example.com",
        token_endpoint="https://keys.example.com/oauth/token",  # noqa: S106 - a URL
        jwks_uri="https://keys.example.com/.well-known/jwks.json",
        introspection_endpoint="https://keys.example.com/oauth/introspect",
        grant_types_supported=["client_credentials"],
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
        introspection_endpoint_auth_methods_supported=["bearer"],
        response_types_supported=[],
        scopes_supported=[],
    ),
    RatelimitRequest: RatelimitRequest(namespace="login", identifier="203.0.113.7", limit=5, duration_ms=60_000),
    RatelimitResponse: RatelimitResponse(success=True, limit=5, remaining=4, reset_at=LATER),
    # -- identities
    IdentityCreate: IdentityCreate(
        owner_id="alice",
        meta={"company": "Acme"},
        ratelimits=[RateLimitSpec(name="api", limit=1000, duration_ms=60_000)],
        credits=CreditsSpec(remaining=50_000),
    ),
    IdentityPatch: IdentityPatch(meta={"company": "Acme Corp"}),
    IdentityOut: _IDENTITY,
    # -- roles and root keys
    RoleSpec: RoleSpec(name=ROLE, permissions=["forecast.read", "forecast.history"]),
    RoleOut: _ROLE,
    RoleList: RoleList([_ROLE]),
    RootKeyCreate: RootKeyCreate(permissions=["keys.verify"], name="verifier"),
    # -- the customer portal
    PortalSessionCreate: PortalSessionCreate(
        api_id=API_ID,
        owner_id="alice",
        return_url="https://weather.example/account",
        policy=PortalPolicySpec(
            max_keys=5,
            permissions=["forecast.read"],
            ratelimits=[RateLimitSpec(name="requests", limit=100, duration_ms=60_000)],
            max_expires_days=365,
        ),
    ),
    PortalSessionOut: PortalSessionOut(
        url="https://keys.weather.example/portal/sign-in?token=Qm9vdHN0cmFw…", expires_at="2026-01-15T08:10:00Z"
    ),
    RootKeyOut: RootKeyOut(**_ROOT_KEY_FIELDS),
    RootKeyCreated: RootKeyCreated(**_ROOT_KEY_FIELDS, key="ks_root_Zt4q…"),
    Page[RootKeyOut]: Page[RootKeyOut]([RootKeyOut(**_ROOT_KEY_FIELDS)], None),
    # -- audit, events, analytics
    Page[AuditOut]: Page[AuditOut](
        [
            AuditOut(
                id="aud_1USuPA4heSYWaVl4WDZ3ES",
                seq=42,
                ts=LATER,
                actor=ROOT_KEY_ID,
                action="key.revoke",
                target=KEY_ID,
                ip="198.51.100.20",
                user_agent="keystile-python/0.1.0",
                changes={"revoked_at": [None, LATER]},
                hash="3f1c2e9a0b7d4c6e8f5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a",
            )
        ],
        None,
    ),
    Page[EventOut]: Page[EventOut]([_EVENT], "evt_Xxf0plbrsPuAMv6GDcYF6H"),
    VerificationSeries: VerificationSeries(
        granularity="hour",
        group_by="outcome",
        since="2026-11-28T00:00:00.000Z",
        until="2026-11-29T00:00:00.000Z",
        items=[
            VerificationCount("2026-11-28T09:00:00.000Z", "RATE_LIMITED", 17),
            VerificationCount("2026-11-28T09:00:00.000Z", "VALID", 1204),
        ],
    ),
    # -- leaks
    list[LeakReport]: [
        # token, type, url, source
        LeakReport(
            "ks_3Fx9…", "keystile_api_key", "https://github.com/octo-org/octo-repo/blob/main/config.py#L3", "content"
        )
    ],
    list[LeakLabel]: [
        # token_hash (the SHA-256 of the token above), token_type, label
        LeakLabel(
            "9ca96a51d069c57d7e7512205ca641549efce2a86fb2635d0cfcd937751e4567", "keystile_api_key", "false_positive"
        )
    ],
    # -- webhooks
    WebhookCreate: WebhookCreate(
        url="https://hooks.example.com/keystile",
        events=["key.created", "key.revoked", "key.leaked", "credits.exhausted"],
        api_ids=[API_ID],
        description="billing service",
    ),
    WebhookPatch: WebhookPatch(enabled=False),
    WebhookOut: WebhookOut(**_WEBHOOK_FIELDS),
    WebhookCreated: WebhookCreated(**_WEBHOOK_FIELDS, secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),  # noqa: S106
    SecretRotation: SecretRotation(grace_period_ms=86_400_000),
    DeliveryOut: _DELIVERY,
    Page[WebhookOut]: Page[WebhookOut]([WebhookOut(**_WEBHOOK_FIELDS)], None),
    Page[DeliveryOut]: Page[DeliveryOut]([_DELIVERY], None),
}
"""An example of every struct a route takes or answers, by type."""

BY_OPERATION: dict[str, Any] = {
    "healthz": Status("ok"),
    "readyz": Status("ready"),
    "metrics": (
        "# HELP keystile_verifications_total Verifications recorded, by the key's API and outcome.\n"
        "# TYPE keystile_verifications_total counter\n"
        f'keystile_verifications_total{{api_id="{API_ID}",outcome="VALID"}} 1204.0\n'
    ),
    "openapi_json": {"openapi": "3.1.0", "info": {"title": "Keystile", "version": "0.1.0"}, "paths": {}},
    "docs": '<!doctype html><html lang="en"><head><title>Keystile API</title></head><body>…</body></html>',
}
"""Answers that differ between operations of one type (``Status``, text): by operation id."""


def example(kind: Any, operation_id: str | None = None) -> Any:
    """The example of ``kind`` (a struct, ``list[...]``, ``Page[...]``) as JSON-ready values, or the one of the
    operation ``operation_id`` when it has its own; ``None`` when there is none."""
    if operation_id in BY_OPERATION:
        return msgspec.to_builtins(BY_OPERATION[operation_id])
    if kind in EXAMPLES:
        return msgspec.to_builtins(EXAMPLES[kind])
    return None
