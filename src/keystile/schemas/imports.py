"""Import of existing keys (SPEC R4): the body of ``POST /v1/apis/{api_id}/keys/import``, the command it becomes,
and its answer."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from keystile.core import keys as keyformat
from keystile.core.commands import ImportedKey, KeyHash, NewKey
from keystile.core.models import ImportResult
from keystile.errors import InvalidInput
from keystile.schemas.common import MAX_BULK, FreeJson, Name, OwnerId, Permission, RoleName, Timestamp, _In
from keystile.schemas.limits import CreditsSpec, RateLimitSpec, new_credits, ratelimits_of

HashText = Annotated[
    str,
    Meta(min_length=1, max_length=128, description="A SHA-256 digest: 64 hex digits, or base64 with `variant`."),
]
PlainKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=keyformat.MAX_KEY_LENGTH,
        description="The key in plain text, in any format (it keeps it); only its SHA-256 digest is stored.",
    ),
]


class KeyHashSpec(_In):
    value: HashText
    variant: Annotated[
        Literal["sha256_hex", "sha256_base64"],
        Meta(description="`sha256_hex` (64 hex digits) or `sha256_base64` (as Unkey exports digests)."),
    ] = "sha256_hex"


class KeyImportEntry(_In):
    key: PlainKey | None = None
    hash: HashText | KeyHashSpec | None = None
    name: Name | None = None
    owner_id: OwnerId | None = None
    external_id: Annotated[OwnerId | None, Meta(description="Unkey's name for `owner_id`; give either.")] = None
    meta: FreeJson = {}
    permissions: list[Permission] = []
    roles: list[RoleName] = []
    expires_at: Timestamp | None = None
    enabled: bool = True
    credits: CreditsSpec | None = None
    ratelimits: list[RateLimitSpec] = []


class KeyImport(_In):
    keys: Annotated[list[KeyImportEntry], Meta(min_length=1, max_length=MAX_BULK)]


class KeyImportItem(Struct):
    index: int
    id: Annotated[str, Meta(description="The key made, or the key of this API that had this digest already.")]
    status: Literal["imported", "skipped"]


class KeyImportResult(Struct):
    imported: int
    skipped: int
    items: list[KeyImportItem]


def imported_key(entry: KeyImportEntry, index: int) -> ImportedKey:
    """The command one decoded entry asks for; raises :class:`InvalidInput` for ``owner_id`` and ``external_id``
    that differ."""
    owner_id = entry.owner_id
    if entry.external_id is not None:
        if owner_id is not None and owner_id != entry.external_id:
            raise InvalidInput(
                f"keys[{index}]: owner_id and external_id name the same thing; give one of them",
                code="invalid_request",
                field=f"/keys/{index}/external_id",
                index=index,
            )
        owner_id = entry.external_id
    given = entry.hash
    digest = (
        KeyHash(given) if isinstance(given, str) else None if given is None else KeyHash(given.value, given.variant)
    )
    spec = NewKey(
        name=entry.name,
        owner_id=owner_id,
        meta=entry.meta,
        permissions=entry.permissions,
        roles=entry.roles,
        expires_at=entry.expires_at,
        enabled=entry.enabled,
        credits=new_credits(entry.credits),
        ratelimits=ratelimits_of(entry.ratelimits),
    )
    return ImportedKey(spec=spec, key=entry.key, hash=digest)


def imported_keys(body: KeyImport) -> list[ImportedKey]:
    """The commands of a decoded import body."""
    return [imported_key(entry, index) for index, entry in enumerate(body.keys)]


def import_result_out(result: ImportResult) -> KeyImportResult:
    return KeyImportResult(
        imported=result.imported,
        skipped=result.skipped,
        items=[KeyImportItem(item.index, item.id, item.status) for item in result.items],
    )
