"""APIs, the keyspaces (SPEC K1), and their roles (SPEC V3)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from keystile.core import keys as keyformat
from keystile.core.commands import KEEP, ApiUpdate, NewApi
from keystile.core.ids import looks_like_id, new_id
from keystile.core.models import ROOT_API_ID, Api, Page, RateLimit, Role
from keystile.core.netaddr import normalise_allowlist
from keystile.core.permissions import validate_grant
from keystile.errors import InvalidInput, NotFound
from keystile.service.authz import Actor, Principal
from keystile.service.context import Context, api_change, key_change, not_found, page_limit, paged
from keystile.service.snapshots import api_snapshot
from keystile.service.validate import check_json


def distinct_ratelimits(specs: Sequence[RateLimit], field: str) -> tuple[RateLimit, ...]:
    """Rate limits as given, refusing two of the same name."""
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise InvalidInput("two rate limits share a name", code="duplicate_ratelimit", field=field)
    return tuple(specs)


def _check_prefix(prefix: str) -> str:
    if not keyformat.is_valid_prefix(prefix):
        raise InvalidInput(f"the prefix {prefix!r} is reserved", code="invalid_prefix", field="/prefix")
    return prefix


def _rotation_policy(spec: NewApi) -> tuple[int | None, int | None]:
    """``max_key_age_days`` and ``expire_stale_after_days`` (SPEC R3); the second needs the first."""
    if spec.expire_stale_after_days is not None and spec.max_key_age_days is None:
        raise InvalidInput(
            "expire_stale_after_days needs max_key_age_days: keys turn stale at that age, then expire",
            code="invalid_rotation_policy",
            field="/expire_stale_after_days",
        )
    return spec.max_key_age_days, spec.expire_stale_after_days


def _merged(api: Api, update: ApiUpdate) -> NewApi:
    """The settings of ``api`` with ``update`` applied."""
    return NewApi(
        name=api.name if update.name is KEEP else update.name,
        prefix=api.prefix if update.prefix is KEEP else update.prefix,
        default_ratelimits=(api.default_ratelimits if update.default_ratelimits is KEEP else update.default_ratelimits),
        max_key_age_days=api.max_key_age_days if update.max_key_age_days is KEEP else update.max_key_age_days,
        recoverable=api.recoverable if update.recoverable is KEEP else update.recoverable,
        ip_allowlist=api.ip_allowlist if update.ip_allowlist is KEEP else update.ip_allowlist,
        expire_stale_after_days=(
            api.expire_stale_after_days if update.expire_stale_after_days is KEEP else update.expire_stale_after_days
        ),
    )


class ApiService:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def create(self, actor: Actor, spec: NewApi) -> Api:
        """Create an API; needs ``apis.write`` for every API."""
        actor.principal.require("apis.write")
        check_json(spec.name, "/name")
        max_age, expire_after = _rotation_policy(spec)
        now = self._ctx.now()
        api = Api(
            id=new_id("api", now),
            name=spec.name,
            prefix=_check_prefix(spec.prefix),
            created_at=now,
            updated_at=now,
            default_ratelimits=distinct_ratelimits(spec.default_ratelimits, "/default_ratelimits"),
            max_key_age_days=max_age,
            recoverable=spec.recoverable,
            ip_allowlist=normalise_allowlist(spec.ip_allowlist),
            expire_stale_after_days=expire_after,
        )
        async with self._ctx.storage.transaction() as tx:
            await tx.insert_api(api)
            await self._ctx.audit(tx, actor, "api.create", api.id, api_snapshot(api), now)
        return api

    async def get(self, principal: Principal, api_id: str, permission: str = "apis.read") -> Api:
        """An API the principal may see with ``permission``; raises NotFound (or Forbidden)."""
        principal.require(permission, api_id)
        known = api_id != ROOT_API_ID and looks_like_id(api_id, "api")
        api = await self._ctx.storage.get_api(api_id) if known else None
        if api is None:
            raise not_found("API", api_id, "api", "api_not_found")
        return api

    async def list(self, principal: Principal, *, cursor: str | None, limit: int | None) -> Page[Api]:
        principal.require_any("apis.read")
        size = page_limit(limit)
        items = await self._ctx.storage.list_apis(after=cursor, limit=size + 1, only=principal.scope("apis.read"))
        return paged(items, size, lambda api: api.id)

    async def update(self, actor: Actor, api_id: str, update: ApiUpdate) -> Api:
        """Change an API's settings (fields not given stay); needs ``apis.write`` for it."""
        async with self._ctx.storage.transaction() as tx:
            current = await self.get(actor.principal, api_id, "apis.write")
            current = await tx.get_api(api_id) or current
            before = api_snapshot(current)
            spec = _merged(current, update)
            check_json(spec.name, "/name")
            max_age, expire_after = _rotation_policy(spec)
            now = self._ctx.now()
            api = Api(
                id=current.id,
                name=spec.name,
                prefix=_check_prefix(spec.prefix),
                created_at=current.created_at,
                updated_at=now,
                default_ratelimits=distinct_ratelimits(spec.default_ratelimits, "/default_ratelimits"),
                max_key_age_days=max_age,
                recoverable=spec.recoverable,
                ip_allowlist=normalise_allowlist(spec.ip_allowlist),
                expire_stale_after_days=expire_after,
            )
            after = api_snapshot(api)
            changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
            if changes:
                await tx.update_api(api)
                await self._ctx.audit(tx, actor, "api.update", api.id, changes, now)
        await self._ctx.publish([api_change(api_id)] if changes else [])
        return api if changes else current

    async def delete(self, actor: Actor, api_id: str) -> None:
        """Delete an API with all its keys and roles (permanent, audited)."""
        async with self._ctx.storage.transaction() as tx:
            api = await self.get(actor.principal, api_id, "apis.write")
            now = self._ctx.now()
            digests = await tx.delete_api(api_id)
            await self._ctx.audit(
                tx, actor, "api.delete", api_id, {**api_snapshot(api), "deleted_keys": len(digests)}, now
            )
        await self._ctx.publish([api_change(api_id), *(key_change(d) for d in digests)])

    # -- roles ----------------------------------------------------------------------------------------------

    async def put_role(
        self, actor: Actor, api_id: str, name: str, permissions: Sequence[str] = ()
    ) -> tuple[Role, bool]:
        """Create or replace the role ``name`` of an API; returns it and whether it is new. Needs ``apis.write``
        for the API."""
        granted = tuple(dict.fromkeys(validate_grant(p) for p in permissions))
        async with self._ctx.storage.transaction() as tx:
            await self.get(actor.principal, api_id, "apis.write")
            now = self._ctx.now()
            existing = await tx.get_role(api_id, name)
            if existing is not None and existing.permissions == granted:
                return existing, False  # nothing changes, so nothing is written or audited
            role = Role(api_id, name, granted, existing.created_at if existing else now, now)
            await tx.put_role(role)
            changes: dict[str, Any] = {"permissions": list(granted)}
            if existing is not None:
                changes = {"permissions": [list(existing.permissions), list(granted)]}
            action = "role.update" if existing else "role.create"
            await self._ctx.audit(tx, actor, action, f"{api_id}/roles/{name}", changes, now)
        await self._ctx.publish([api_change(api_id)])
        return role, existing is None

    async def list_roles(self, principal: Principal, api_id: str) -> builtins.list[Role]:
        await self.get(principal, api_id, "apis.read")
        return await self._ctx.storage.list_roles(api_id)

    async def delete_role(self, actor: Actor, api_id: str, name: str) -> None:
        """Delete a role and take it off every key of the API that lists it."""
        async with self._ctx.storage.transaction() as tx:
            await self.get(actor.principal, api_id, "apis.write")
            role = await tx.get_role(api_id, name)
            if role is None:
                raise NotFound(f"no such role in {api_id}", code="role_not_found")
            now = self._ctx.now()
            digests = await tx.delete_role(api_id, name)
            changes = {"permissions": list(role.permissions), "removed_from_keys": len(digests)}
            await self._ctx.audit(tx, actor, "role.delete", f"{api_id}/roles/{name}", changes, now)
        await self._ctx.publish([api_change(api_id)])
