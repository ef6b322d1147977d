"""Roles (SPEC V3): named permission sets of an API."""

from __future__ import annotations

from msgspec import Struct

from keystile.core.models import Role
from keystile.schemas.common import Permission, RoleName, TimeOut, _In, utc


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


def role_out(role: Role) -> RoleOut:
    return RoleOut(role.api_id, role.name, list(role.permissions), utc(role.created_at), utc(role.updated_at))
