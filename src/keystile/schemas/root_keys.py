"""Root keys (SPEC K6): the keys of the management API itself."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct

from keystile.core.commands import NewRootKey
from keystile.core.models import Key
from keystile.core.timefmt import to_rfc3339
from keystile.schemas.common import Name, Permission, TimeOut, Timestamp, _In, utc


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


def _root_fields(key: Key) -> dict[str, Any]:
    return {
        "id": key.id,
        "start": key.start,
        "name": key.name,
        "permissions": list(key.permissions),
        "created_at": utc(key.created_at),
        "expires_at": to_rfc3339(key.expires_at),
        "revoked_at": to_rfc3339(key.revoked_at),
        "last_used_at": to_rfc3339(key.last_used_at),
    }


def root_key_out(key: Key) -> RootKeyOut:
    return RootKeyOut(**_root_fields(key))


def root_key_created(key: Key, plain: str) -> RootKeyCreated:
    return RootKeyCreated(**_root_fields(key), key=plain)


def new_root_key(spec: RootKeyCreate) -> NewRootKey:
    """The command a decoded ``RootKeyCreate`` asks for."""
    return NewRootKey(permissions=spec.permissions, name=spec.name, expires_at=spec.expires_at)
