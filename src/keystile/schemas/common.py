"""What every wire schema shares: the constrained types of fields, the base of request bodies, pages and problems.

Constraints the services check themselves, each with its own problem code, are documented through
``extra_json_schema``: msgspec puts them in the OpenAPI document without checking them a second time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from msgspec import Meta, Struct, UnsetType

from keystile.core import keys as keyformat
from keystile.core.commands import KEEP, Keep
from keystile.core.netaddr import MAX_ALLOWLIST
from keystile.core.permissions import GRANT_RE, MAX_SLUG_LENGTH
from keystile.core.timefmt import to_rfc3339

T = TypeVar("T")

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
Recoverable = Annotated[
    bool,
    Meta(
        description="Keep this API's keys encrypted (under the master key) so that a root key with `keys.decrypt` "
        "can read them back with `GET /v1/keys/{key_id}/plaintext`. Applies to keys created afterwards."
    ),
]
MAX_BULK = 1000


class _In(Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies."""


class Page(Struct, Generic[T]):
    """A page of a list, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None


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


def or_keep(value: T | UnsetType) -> T | Keep:
    """A member of a merge patch as a change: absent keeps the field as it is."""
    return KEEP if isinstance(value, UnsetType) else value


def list_or_keep(value: list[T] | UnsetType | None) -> list[T] | Keep:
    """A list member of a merge patch as a change: absent keeps the list, ``null`` empties it."""
    if isinstance(value, UnsetType):
        return KEEP
    return [] if value is None else value


def utc(ms: int) -> str:
    """A time (epoch ms) as the API answers it: RFC 3339 in UTC."""
    text = to_rfc3339(ms)
    assert text is not None
    return text


def to_builtins(value: Any) -> Any:
    """A wire struct as plain JSON-compatible Python values (for the CLI's ``--json``)."""
    return msgspec.to_builtins(value)
