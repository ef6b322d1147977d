"""Wire schemas: the JSON bodies of the HTTP API, as msgspec structs (SPEC H).

One definition serves three purposes: decoding and validating request bodies (HTTP and CLI alike), encoding
responses, and generating the OpenAPI 3.1 document. Request structs refuse unknown fields, so a typo is an
error rather than a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from keystile.core import keys as keyformat
from keystile.core.models import Api, AuditEntry, Credits, Identity, Key, RateLimit, Role, VerificationEvent
from keystile.core.netaddr import MAX_ALLOWLIST
from keystile.core.permissions import GRANT_RE, MAX_SLUG_LENGTH
from keystile.core.ports import Granularity, GroupBy, RollupCount
from keystile.core.timefmt import to_rfc3339

T = TypeVar("T")

# Constraints the services check themselves, each with its own problem code, are documented through
# ``extra_json_schema``: msgspec puts them in the OpenAPI document without checking them a second time.
NO_NUL = {"pattern": r"^[^\x00]*$"}
"""Text that PostgreSQL can store: no U+0000 (the services refuse it with ``invalid_character``)."""
GRANT_PATTERN = f"^(?:{GRANT_RE.pattern})$"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:|(?:{_H}:){{1,6}}:{_H}|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}"
    rf"|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}"
    rf"|{_H}:(?::{_H}){{1,6}}|:(?:(?::{_H}){{1,7}}|:)|::[fF]{{4}}:{_IPV4})"
)
CIDR_PATTERN = rf"^(?:{_IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?|{_IPV6}(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"
"""IPv4 or IPv6 networks (``10.0.0.0/8``, ``2001:db8::/32``) and single addresses, as documented; the parser
also takes the rarer spellings of :mod:`ipaddress` (a netmask instead of a prefix length)."""

Name = Annotated[
    str, Meta(min_length=1, max_length=255, extra_json_schema=NO_NUL, description="A human-readable name.")
]
LimitName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$", description="A rate limit's name.")]
RoleName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$", description="A role's name.")]
OwnerId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=256,
        extra_json_schema=NO_NUL,
        description="External id of the user or application holding keys.",
    ),
]
Permission = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_SLUG_LENGTH,
        extra_json_schema={"pattern": GRANT_PATTERN},
        description="A permission such as `docs.read`: letters, digits and `_:.-`, optionally ending in `.*` "
        "(`docs.*` grants every `docs.` permission), or `*` alone.",
    ),
]
Cidr = Annotated[
    str,
    Meta(
        max_length=64,
        extra_json_schema={"pattern": CIDR_PATTERN},
        description="An IPv4 or IPv6 network in CIDR notation, or a single address.",
    ),
]
Allowlist = Annotated[
    list[Cidr],
    Meta(
        extra_json_schema={"maxItems": MAX_ALLOWLIST},
        description=f"Client networks allowed to use the keys (at most {MAX_ALLOWLIST}); empty: any client.",
    ),
]
FreeJson = Annotated[
    dict[str, Any],
    Meta(
        description="Free JSON, at most 16 KiB encoded and 64 levels deep; no text (member names included) may "
        "contain U+0000."
    ),
]
Prefix = Annotated[
    str,
    Meta(
        pattern=r"^[a-z0-9]{1,12}(_[a-z0-9]{1,12})?$",
        extra_json_schema={"not": {"enum": sorted(keyformat.RESERVED_PREFIXES)}},
        description="Key prefix: 1-12 lowercase letters or digits, optionally `_live`/`_test` style second part.",
    ),
]
Timestamp = Annotated[datetime, Meta(tz=True, description="An RFC 3339 time with an offset.")]
TimeOut = Annotated[str, Meta(description="An RFC 3339 UTC time.")]
MAX_CREDITS = 2**53
"""The largest balance: every backend and every JSON client holds it exactly."""
Count = Annotated[int, Meta(ge=0, le=MAX_CREDITS)]
MaxKeyAge = Annotated[int, Meta(ge=1, le=3650, description="Rotation policy: keys older than this are stale.")]
StaleExpiry = Annotated[
    int,
    Meta(
        ge=0,
        le=3650,
        description="With `max_key_age_days`: stale keys verify as EXPIRED this many days after turning stale.",
    ),
]
# The service refuses true (not_supported) until recoverable keys exist; the document says so with ``const``.
Recoverable = Annotated[
    bool,
    Meta(
        extra_json_schema={"const": False},
        description="Must be false for now: recoverable keys (kept encrypted so that they can be shown again) "
        "are not available yet.",
    ),
]
MAX_BULK = 1000
MAX_META_BYTES = 16 * 1024


class _In(Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies."""


# -- shared parts --------------------------------------------------------------------------------------------


class RateLimitSpec(_In):
    name: LimitName
    limit: Annotated[int, Meta(ge=1, le=10**9, description="Requests of cost 1 allowed per duration.")]
    duration_ms: Annotated[int, Meta(ge=1, le=365 * 86_400_000, description="Window length in milliseconds.")]
    auto_apply: bool = True


class RefillSpec(_In):
    amount: Count
    interval: Literal["daily", "monthly"]
    day: Annotated[int, Meta(ge=1, le=31)] | None = None


class CreditsSpec(_In):
    remaining: Count
    refill: RefillSpec | None = None


class RefillPatch(_In):
    """A JSON Merge Patch of a refill: absent fields stay, ``day: null`` removes the day."""

    amount: Count | UnsetType = UNSET
    interval: Literal["daily", "monthly"] | UnsetType = UNSET
    day: Annotated[int, Meta(ge=1, le=31)] | UnsetType | None = UNSET


class CreditsPatch(_In):
    """A JSON Merge Patch of credits, merged into the current balance (which needs ``remaining`` when there is
    none yet); ``refill: null`` removes the refill, ``credits: null`` makes the credits unlimited."""

    remaining: Count | UnsetType = UNSET
    refill: RefillPatch | UnsetType | None = UNSET


class RateLimitOut(Struct):
    name: str
    limit: int
    duration_ms: int
    auto_apply: bool


class RefillOut(Struct):
    amount: int
    interval: str
    day: int | None


class CreditsOut(Struct):
    remaining: int
    refill: RefillOut | None = None


class Page(Struct, Generic[T]):
    """A page of a list, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None


# -- APIs ---------------------------------------------------------------------------------------------------


class ApiCreate(_In):
    name: Name
    prefix: Prefix = keyformat.DEFAULT_PREFIX
    default_ratelimits: list[RateLimitSpec] = []
    max_key_age_days: MaxKeyAge | None = None
    recoverable: Recoverable = False
    ip_allowlist: Allowlist = []
    expire_stale_after_days: StaleExpiry | None = None


class ApiPatch(_In):
    """A JSON Merge Patch (RFC 7396) of an API: absent fields stay, ``null`` resets to the default."""

    name: Name | UnsetType = UNSET
    prefix: Prefix | UnsetType = UNSET
    default_ratelimits: list[RateLimitSpec] | UnsetType | None = UNSET
    max_key_age_days: MaxKeyAge | UnsetType | None = UNSET
    recoverable: Recoverable | UnsetType = UNSET
    ip_allowlist: Allowlist | UnsetType | None = UNSET
    expire_stale_after_days: StaleExpiry | UnsetType | None = UNSET


class ApiOut(Struct):
    id: str
    name: str
    prefix: str
    created_at: TimeOut
    updated_at: TimeOut
    default_ratelimits: list[RateLimitOut]
    max_key_age_days: int | None
    recoverable: bool
    ip_allowlist: list[str]
    expire_stale_after_days: int | None


# -- keys ----------------------------------------------------------------------------------------------------


class KeyCreate(_In):
    name: Name | None = None
    owner_id: OwnerId | None = None
    meta: FreeJson = {}
    permissions: list[Permission] = []
    roles: list[RoleName] = []
    expires_at: Timestamp | None = None
    enabled: bool = True
    credits: CreditsSpec | None = None
    ratelimits: list[RateLimitSpec] = []
    ip_allowlist: Allowlist = []


class KeyPatch(_In):
    """A JSON Merge Patch (RFC 7396) of a key: absent fields stay, ``null`` removes or resets; ``meta`` and
    ``credits`` merge member by member."""

    name: Name | UnsetType | None = UNSET
    owner_id: OwnerId | UnsetType | None = UNSET
    meta: FreeJson | UnsetType | None = UNSET
    permissions: list[Permission] | UnsetType | None = UNSET
    roles: list[RoleName] | UnsetType | None = UNSET
    expires_at: Timestamp | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    credits: CreditsPatch | UnsetType | None = UNSET
    ratelimits: list[RateLimitSpec] | UnsetType | None = UNSET
    ip_allowlist: Allowlist | UnsetType | None = UNSET


class BulkKeyCreate(_In):
    keys: Annotated[list[KeyCreate], Meta(min_length=1, max_length=MAX_BULK)]


class KeyOut(Struct):
    id: str
    api_id: str
    start: str
    name: str | None
    owner_id: str | None
    meta: dict[str, Any]
    permissions: list[str]
    roles: list[str]
    created_at: TimeOut
    updated_at: TimeOut
    expires_at: TimeOut | None
    enabled: bool
    revoked_at: TimeOut | None
    last_used_at: TimeOut | None
    credits: CreditsOut | None
    ratelimits: list[RateLimitOut]
    ip_allowlist: list[str]
    rotated_from: str | None
    rotated_to: str | None
    stale: Annotated[bool, Meta(description="Older than its API's `max_key_age_days`: due for rotation.")]


class KeyCreated(KeyOut):
    key: Annotated[str, Meta(description="The key in plain text. Shown this once; Keystile keeps only its hash.")]


class BulkKeysCreated(Struct):
    items: list[KeyCreated]


GracePeriod = Annotated[
    int,
    Meta(ge=0, le=365 * 86_400_000, description="How long the old key keeps working, in milliseconds (default 0)."),
]


class RerollSpec(_In):
    grace_period_ms: GracePeriod = 0
    expires_at: Timestamp | None = None


class CreditsChange(_In):
    op: Literal["set", "add", "subtract"]
    amount: Annotated[
        Count | None,
        Meta(description="Credits to set, add or subtract; `null` with `set` makes the credits unlimited."),
    ]


# -- identities (SPEC K5) ---------------------------------------------------------------------------------------


class IdentityCreate(_In):
    owner_id: OwnerId
    meta: FreeJson = {}
    ratelimits: list[RateLimitSpec] = []
    credits: CreditsSpec | None = None


class IdentityPatch(_In):
    """A JSON Merge Patch (RFC 7396) of an identity: ``meta`` and ``credits`` merge member by member, ``null``
    removes (credits become unlimited, rate limits none)."""

    meta: FreeJson | UnsetType | None = UNSET
    ratelimits: list[RateLimitSpec] | UnsetType | None = UNSET
    credits: CreditsPatch | UnsetType | None = UNSET


class IdentityOut(Struct):
    id: str
    owner_id: str
    meta: dict[str, Any]
    ratelimits: list[RateLimitOut]
    credits: CreditsOut | None
    created_at: TimeOut
    updated_at: TimeOut


# -- standalone rate limits (SPEC L4) -----------------------------------------------------------------------------


class RatelimitRequest(_In):
    namespace: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="What is limited, such as `login` or `email.send`.")
    ]
    identifier: Annotated[
        str, Meta(min_length=1, max_length=256, description="Who is limited, such as a user id or an IP address.")
    ]
    limit: Annotated[int, Meta(ge=1, le=10**9, description="Requests of cost 1 allowed per duration.")]
    duration_ms: Annotated[int, Meta(ge=1, le=365 * 86_400_000, description="Window length in milliseconds.")]
    cost: Annotated[int, Meta(ge=0, le=10**9)] = 1


class RatelimitResponse(Struct):
    success: bool
    limit: int
    remaining: int
    reset_at: TimeOut


# -- roles and root keys ---------------------------------------------------------------------------------------


class RoleSpec(_In):
    name: RoleName
    permissions: list[Permission] = []


class RoleOut(Struct):
    api_id: str
    name: str
    permissions: list[str]
    created_at: TimeOut
    updated_at: TimeOut


class RoleList(Struct):
    items: list[RoleOut]


class RootKeyCreate(_In):
    permissions: Annotated[list[Permission], Meta(min_length=1)]
    name: Name | None = None
    expires_at: Timestamp | None = None


class RootKeyOut(Struct):
    id: str
    start: str
    name: str | None
    permissions: list[str]
    created_at: TimeOut
    expires_at: TimeOut | None
    revoked_at: TimeOut | None
    last_used_at: TimeOut | None


class RootKeyCreated(RootKeyOut):
    key: Annotated[str, Meta(description="The root key in plain text. Shown this once.")]


# -- audit ---------------------------------------------------------------------------------------------------


class AuditOut(Struct):
    id: str
    seq: int
    ts: TimeOut
    actor: str
    action: str
    target: str
    ip: str | None
    user_agent: str | None
    changes: dict[str, Any]


# -- verification events and analytics (SPEC O1-O3) ---------------------------------------------------------


class EventOut(Struct):
    """One verification. ``api_id`` is the key's API, else the one the request named; ``key_id`` and
    ``owner_id`` are null when the key was not found."""

    id: str
    ts: TimeOut
    request_id: str | None
    api_id: str | None
    key_id: str | None
    owner_id: str | None
    outcome: str
    ip: str | None
    tags: list[str]
    latency_us: int


class VerificationCount(Struct):
    """How many verifications fell in the bucket starting at ``ts`` for one ``group``: an outcome, a key id or
    an owner id (null for verifications without a key or owner)."""

    ts: TimeOut
    group: str | None
    count: int


class VerificationSeries(Struct):
    """Counts per bucket and group, oldest bucket first, over ``[since, until)`` (the asked range widened to
    whole buckets). Buckets and groups without verifications are left out: they count zero."""

    granularity: Granularity
    group_by: GroupBy
    since: TimeOut
    until: TimeOut
    items: list[VerificationCount]


# -- verification (SPEC V1) ----------------------------------------------------------------------------------


class VerifyCredits(_In):
    cost: Annotated[int, Meta(ge=0, le=10**9)] = 1


class VerifyRateLimit(_In):
    name: LimitName
    cost: Annotated[int, Meta(ge=0, le=10**9)] = 1


class VerifyRequest(_In):
    key: Annotated[str, Meta(max_length=4096, description="The key to verify.")]
    api_id: str | None = None
    permissions: (
        Annotated[
            str, Meta(max_length=4096, description="A permission query, such as `docs.read AND (docs.write OR admin)`.")
        ]
        | None
    ) = None
    credits: VerifyCredits | None = None
    ratelimits: list[VerifyRateLimit] | None = None
    ip: (
        Annotated[
            str,
            Meta(
                max_length=64,
                extra_json_schema={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
                description="The client's IP address, checked against allowlists.",
            ),
        ]
        | None
    ) = None
    tags: Annotated[list[Annotated[str, Meta(max_length=128)]], Meta(max_length=20)] | None = None


class RateLimitState(Struct):
    name: str
    limit: int
    remaining: int
    reset_at: TimeOut


class RemainingOut(Struct):
    remaining: int


class VerifyResponse(Struct, omit_defaults=False):
    valid: bool
    code: Literal[
        "VALID",
        "NOT_FOUND",
        "REVOKED",
        "DISABLED",
        "EXPIRED",
        "FORBIDDEN",
        "INSUFFICIENT_PERMISSIONS",
        "RATE_LIMITED",
        "USAGE_EXCEEDED",
    ]
    key_id: str | None = None
    api_id: str | None = None
    name: str | None = None
    owner_id: str | None = None
    meta: dict[str, Any] | None = None
    permissions: list[str] | None = None
    roles: list[str] | None = None
    expires_at: TimeOut | None = None
    credits: RemainingOut | None = None
    ratelimits: list[RateLimitState] | None = None


# -- leak reports of GitHub's secret scanning (SPEC S3) ------------------------------------------------------


class LeakReport(Struct):
    """One match GitHub found (unknown fields are ignored: GitHub may add some)."""

    token: Annotated[str, Meta(description="The string that matched Keystile's key pattern.")]
    type: Annotated[str, Meta(max_length=256, description="The secret type registered with GitHub.")] = ""
    url: Annotated[str, Meta(max_length=4096, description="Where GitHub found it (may be empty).")] = ""
    source: Annotated[str, Meta(max_length=256, description="content, commit, pull_request, gist, npm...")] = ""


class LeakLabel(Struct):
    """GitHub's feedback format: whether a reported token was a real key of this deployment."""

    token_hash: Annotated[str, Meta(description="SHA-256 of the token, in hex.")]
    token_type: str
    label: Annotated[str, Meta(description="`true_positive` (a key of this deployment) or `false_positive`.")]


# -- rules across fields, for the OpenAPI document ------------------------------------------------------------

RULES: dict[type, dict[str, Any]] = {
    # ApiService refuses it (invalid_rotation_policy): keys turn stale at max_key_age_days, then expire.
    ApiCreate: {
        "if": {"properties": {"expire_stale_after_days": {"type": "integer"}}, "required": ["expire_stale_after_days"]},
        "then": {"properties": {"max_key_age_days": {"type": "integer"}}, "required": ["max_key_age_days"]},
    },
    # credits_from_spec refuses it (invalid_refill).
    RefillSpec: {
        "if": {"properties": {"interval": {"const": "daily"}}},
        "then": {"properties": {"day": {"type": "null"}}},
    },
    RefillPatch: {
        "if": {"properties": {"interval": {"const": "daily"}}, "required": ["interval"]},
        "then": {"properties": {"day": {"type": "null"}}},
    },
    # KeyService.change_credits refuses it: only `set` takes null (unlimited).
    CreditsChange: {
        "if": {"properties": {"op": {"enum": ["add", "subtract"]}}},
        "then": {"properties": {"amount": {"type": "integer"}}},
    },
}
"""What the OpenAPI document adds to a struct's schema: rules between its fields that the services enforce."""


class Status(Struct):
    """The answer of ``/healthz`` (``ok``) and ``/readyz`` (``ready``)."""

    status: str


class Problem(Struct, omit_defaults=True):
    """An RFC 9457 problem; ``code`` is stable, ``detail`` is for people."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    field: str | None = None
    position: int | None = None
    index: int | None = None


# -- record -> wire --------------------------------------------------------------------------------------------


def ratelimit_out(limit: RateLimit) -> RateLimitOut:
    return RateLimitOut(limit.name, limit.limit, limit.duration_ms, limit.auto_apply)


def credits_out(credits: Credits | None) -> CreditsOut | None:
    if credits is None:
        return None
    refill = credits.refill
    return CreditsOut(
        credits.remaining,
        RefillOut(refill.amount, refill.interval, refill.day) if refill is not None else None,
    )


def api_out(api: Api) -> ApiOut:
    return ApiOut(
        id=api.id,
        name=api.name,
        prefix=api.prefix,
        created_at=_t(api.created_at),
        updated_at=_t(api.updated_at),
        default_ratelimits=[ratelimit_out(rl) for rl in api.default_ratelimits],
        max_key_age_days=api.max_key_age_days,
        recoverable=api.recoverable,
        ip_allowlist=list(api.ip_allowlist),
        expire_stale_after_days=api.expire_stale_after_days,
    )


def _key_fields(key: Key) -> dict[str, Any]:
    return {
        "id": key.id,
        "api_id": key.api_id,
        "start": key.start,
        "name": key.name,
        "owner_id": key.owner_id,
        "meta": key.meta,
        "permissions": list(key.permissions),
        "roles": list(key.roles),
        "created_at": _t(key.created_at),
        "updated_at": _t(key.updated_at),
        "expires_at": to_rfc3339(key.expires_at),
        "enabled": key.enabled,
        "revoked_at": to_rfc3339(key.revoked_at),
        "last_used_at": to_rfc3339(key.last_used_at),
        "credits": credits_out(key.credits),
        "ratelimits": [ratelimit_out(rl) for rl in key.ratelimits],
        "ip_allowlist": list(key.ip_allowlist),
        "rotated_from": key.rotated_from,
        "rotated_to": key.rotated_to,
    }


def key_out(key: Key, *, stale: bool = False) -> KeyOut:
    """A key as the API shows it; ``stale`` is decided by the caller, who knows the API and the time."""
    return KeyOut(**_key_fields(key), stale=stale)


def key_created(key: Key, plain: str) -> KeyCreated:
    """A key just made (never stale) with its plain text."""
    return KeyCreated(**_key_fields(key), stale=False, key=plain)


def identity_out(identity: Identity) -> IdentityOut:
    return IdentityOut(
        id=identity.id,
        owner_id=identity.owner_id,
        meta=identity.meta,
        ratelimits=[ratelimit_out(rl) for rl in identity.ratelimits],
        credits=credits_out(identity.credits),
        created_at=_t(identity.created_at),
        updated_at=_t(identity.updated_at),
    )


def _root_fields(key: Key) -> dict[str, Any]:
    return {
        "id": key.id,
        "start": key.start,
        "name": key.name,
        "permissions": list(key.permissions),
        "created_at": _t(key.created_at),
        "expires_at": to_rfc3339(key.expires_at),
        "revoked_at": to_rfc3339(key.revoked_at),
        "last_used_at": to_rfc3339(key.last_used_at),
    }


def root_key_out(key: Key) -> RootKeyOut:
    return RootKeyOut(**_root_fields(key))


def root_key_created(key: Key, plain: str) -> RootKeyCreated:
    return RootKeyCreated(**_root_fields(key), key=plain)


def role_out(role: Role) -> RoleOut:
    return RoleOut(role.api_id, role.name, list(role.permissions), _t(role.created_at), _t(role.updated_at))


def audit_out(entry: AuditEntry) -> AuditOut:
    assert entry.seq is not None
    return AuditOut(
        entry.id,
        entry.seq,
        _t(entry.ts),
        entry.actor,
        entry.action,
        entry.target,
        entry.ip,
        entry.user_agent,
        entry.changes,
    )


def event_out(event: VerificationEvent) -> EventOut:
    return EventOut(
        event.id,
        _t(event.ts),
        event.request_id,
        event.api_id,
        event.key_id,
        event.owner_id,
        event.outcome,
        event.ip,
        list(event.tags),
        event.latency_us,
    )


def series_out(
    granularity: Granularity, group_by: GroupBy, since: int, until: int, counts: Sequence[RollupCount]
) -> VerificationSeries:
    return VerificationSeries(
        granularity,
        group_by,
        _t(since),
        _t(until),
        [VerificationCount(_t(c.bucket), c.group, c.count) for c in counts],
    )


def _t(ms: int) -> str:
    text = to_rfc3339(ms)
    assert text is not None
    return text


def to_builtins(value: Any) -> Any:
    """A wire struct as plain JSON-compatible Python values (for the CLI's ``--json`` and audit entries)."""
    return msgspec.to_builtins(value)
