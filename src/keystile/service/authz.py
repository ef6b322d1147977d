"""Who may do what (SPEC K6, S5): root-key permissions, optionally scoped to one API.

A grant is global (``keys.write``), scoped (``api.<api_id>.keys.write``), a wildcard (``keys.*``,
``api.<api_id>.*``) or ``*``. A principal lacking a permission for every API gets 403; one that holds it only for
other APIs gets 404 for the object, so that it learns nothing about objects it may not see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keystile.core.permissions import Grants
from keystile.errors import Forbidden, InvalidInput, NotFound

ROOT_PERMISSIONS = (
    "apis.read",
    "apis.write",
    "keys.read",
    "keys.write",
    "keys.verify",
    "keys.decrypt",
    "identities.read",
    "identities.write",
    "analytics.read",
    "audit.read",
    "webhooks.read",
    "webhooks.write",
    "root_keys.write",
)
_GROUPS = frozenset(p.split(".")[0] for p in ROOT_PERMISSIONS)
_VOCABULARY = frozenset(ROOT_PERMISSIONS) | {f"{group}.*" for group in _GROUPS} | {"*"}
_SCOPED = re.compile(r"api\.(api_[0-9A-Za-z]{1,40})\.(.+)")
# Permissions that make sense per API; the others (root keys, audit...) are deployment-wide.
_SCOPABLE_GROUPS = frozenset({"apis", "keys", "analytics"})


class Principal:
    """The holder of a set of root-key grants (or the CLI, which may do anything)."""

    __slots__ = ("_scopes", "grants", "id")

    def __init__(self, principal_id: str, grants: Grants | None) -> None:
        self.id = principal_id
        self.grants = grants
        self._scopes: dict[str, frozenset[str] | None] = {}

    def allows(self, permission: str, api_id: str | None = None) -> bool:
        """Whether the principal holds ``permission`` globally, or for ``api_id``."""
        if self.grants is None or self.grants.has(permission):
            return True
        return api_id is not None and self.grants.has(f"api.{api_id}.{permission}")

    def scope(self, permission: str) -> frozenset[str] | None:
        """``None`` when ``permission`` is held for every API, else the ids of the APIs it is held for."""
        if permission not in self._scopes:
            self._scopes[permission] = self._compute_scope(permission)
        return self._scopes[permission]

    def _compute_scope(self, permission: str) -> frozenset[str] | None:
        if self.allows(permission):
            return None
        assert self.grants is not None
        apis = set()
        for grant in self.grants.exact:
            match = _SCOPED.fullmatch(grant)
            if match and Grants([match[2]]).has(permission):
                apis.add(match[1])
        return frozenset(apis)

    def require(self, permission: str, api_id: str | None = None) -> None:
        """Raise unless allowed: :class:`Forbidden` when held for no API, :class:`NotFound` when held only for
        others (``api_id`` given)."""
        if self.allows(permission, api_id):
            return
        if api_id is not None and self.scope(permission):
            raise NotFound("no such object", code="not_found")
        raise Forbidden(f"this root key lacks the permission {permission}", code="insufficient_permissions")

    def require_any(self, permission: str) -> None:
        """Raise :class:`Forbidden` unless ``permission`` is held for at least one API."""
        if self.scope(permission) == frozenset():
            raise Forbidden(f"this root key lacks the permission {permission}", code="insufficient_permissions")


CLI = Principal("cli", None)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs a management action, and from where (for the audit log)."""

    principal: Principal
    ip: str | None = None
    user_agent: str | None = None

    @property
    def id(self) -> str:
        return self.principal.id


CLI_ACTOR = Actor(CLI)


def validate_root_permission(permission: str) -> str:
    """Check that a root key permission belongs to the vocabulary of SPEC K6."""
    match = _SCOPED.fullmatch(permission)
    rest = match[2] if match else permission
    if rest not in _VOCABULARY or (match and rest != "*" and rest.split(".")[0] not in _SCOPABLE_GROUPS):
        raise InvalidInput(
            f"{permission[:80]!r} is not a root key permission; use one of {', '.join(ROOT_PERMISSIONS)}, "
            "a group wildcard such as keys.*, *, or api.<api_id>.<permission> for keys and APIs",
            code="invalid_permission",
        )
    return permission


def holds(principal: Principal, permission: str) -> bool:
    """Whether ``principal`` holds ``permission`` itself, so that it may hand it to a new root key."""
    if principal.grants is None:
        return True
    if principal.grants.has(permission):
        return True
    match = _SCOPED.fullmatch(permission)
    # A global grant covers the same permission scoped to any one API.
    return match is not None and principal.grants.has(match[2])
