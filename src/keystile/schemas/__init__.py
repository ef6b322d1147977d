"""Wire schemas: the JSON bodies of the HTTP API, as msgspec structs (SPEC H), one module per resource.

One definition serves three purposes: decoding and validating request bodies (HTTP and CLI alike), encoding
responses, and generating the OpenAPI 3.1 document. Request structs refuse unknown fields, so a typo is an
error rather than a silently ignored setting. Each module also turns records into their wire shape
(``key_out``...); :mod:`~keystile.schemas.decoding` decodes bodies with errors that name the wrong field.

Every public name is exported here: ``from keystile.schemas import KeyCreate`` is how the client's users (and
the server and CLI) import them.
"""

from __future__ import annotations

from keystile.schemas.apis import ApiCreate, ApiOut, ApiPatch, api_out
from keystile.schemas.audit import AuditOut, audit_out
from keystile.schemas.common import (
    CIDR_PATTERN,
    GRANT_PATTERN,
    MAX_BULK,
    MAX_CREDITS,
    MAX_META_BYTES,
    NO_NUL,
    Allowlist,
    Cidr,
    Count,
    FreeJson,
    LimitName,
    MaxKeyAge,
    Name,
    OwnerId,
    Page,
    Permission,
    Prefix,
    Problem,
    Recoverable,
    RoleName,
    StaleExpiry,
    Status,
    TimeOut,
    Timestamp,
    to_builtins,
)
from keystile.schemas.decoding import convert, decode
from keystile.schemas.events import EventOut, VerificationCount, VerificationSeries, event_out, series_out
from keystile.schemas.identities import IdentityCreate, IdentityOut, IdentityPatch, identity_out
from keystile.schemas.keys import (
    BulkKeyCreate,
    BulkKeysCreated,
    CreditsChange,
    GracePeriod,
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyPatch,
    RerollSpec,
    key_created,
    key_out,
)
from keystile.schemas.leaks import LeakLabel, LeakReport
from keystile.schemas.limits import (
    CreditsOut,
    CreditsPatch,
    CreditsSpec,
    RateLimitOut,
    RateLimitSpec,
    RefillOut,
    RefillPatch,
    RefillSpec,
    credits_out,
    ratelimit_out,
)
from keystile.schemas.ratelimits import RatelimitRequest, RatelimitResponse
from keystile.schemas.roles import RoleList, RoleOut, RoleSpec, role_out
from keystile.schemas.root_keys import RootKeyCreate, RootKeyCreated, RootKeyOut, root_key_created, root_key_out
from keystile.schemas.rules import RULES
from keystile.schemas.verify import (
    RateLimitState,
    RemainingOut,
    VerifyCredits,
    VerifyRateLimit,
    VerifyRequest,
    VerifyResponse,
)

__all__ = [
    "CIDR_PATTERN",
    "GRANT_PATTERN",
    "MAX_BULK",
    "MAX_CREDITS",
    "MAX_META_BYTES",
    "NO_NUL",
    "RULES",
    "Allowlist",
    "ApiCreate",
    "ApiOut",
    "ApiPatch",
    "AuditOut",
    "BulkKeyCreate",
    "BulkKeysCreated",
    "Cidr",
    "Count",
    "CreditsChange",
    "CreditsOut",
    "CreditsPatch",
    "CreditsSpec",
    "EventOut",
    "FreeJson",
    "GracePeriod",
    "IdentityCreate",
    "IdentityOut",
    "IdentityPatch",
    "KeyCreate",
    "KeyCreated",
    "KeyOut",
    "KeyPatch",
    "LeakLabel",
    "LeakReport",
    "LimitName",
    "MaxKeyAge",
    "Name",
    "OwnerId",
    "Page",
    "Permission",
    "Prefix",
    "Problem",
    "RateLimitOut",
    "RateLimitSpec",
    "RateLimitState",
    "RatelimitRequest",
    "RatelimitResponse",
    "Recoverable",
    "RefillOut",
    "RefillPatch",
    "RefillSpec",
    "RemainingOut",
    "RerollSpec",
    "RoleList",
    "RoleName",
    "RoleOut",
    "RoleSpec",
    "RootKeyCreate",
    "RootKeyCreated",
    "RootKeyOut",
    "StaleExpiry",
    "Status",
    "TimeOut",
    "Timestamp",
    "VerificationCount",
    "VerificationSeries",
    "VerifyCredits",
    "VerifyRateLimit",
    "VerifyRequest",
    "VerifyResponse",
    "api_out",
    "audit_out",
    "convert",
    "credits_out",
    "decode",
    "event_out",
    "identity_out",
    "key_created",
    "key_out",
    "ratelimit_out",
    "role_out",
    "root_key_created",
    "root_key_out",
    "series_out",
    "to_builtins",
]
