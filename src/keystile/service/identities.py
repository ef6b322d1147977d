"""Identities (SPEC K5): one customer of the deployment, whose rate limits and credits all of its keys share.

An identity is found by its ``owner_id``: every key with that ``owner_id``, in any API, draws on the identity's
balance (unless it has credits of its own) and applies the identity's rate limits (a key's limit of the same name
replaces the identity's). A change publishes ``Change("owner", owner_id)``, so that cached keys of that owner
pick it up at once.
"""

from __future__ import annotations

from typing import Any

from keystile.core.commands import KEEP, IdentityUpdate, NewIdentity
from keystile.core.ids import looks_like_id, new_id
from keystile.core.jsonvalues import MAX_META_BYTES
from keystile.core.models import Identity, Page
from keystile.core.ports import Change
from keystile.errors import Conflict, InvalidInput, NotFound
from keystile.service.apis import distinct_ratelimits
from keystile.service.authz import Actor, Principal
from keystile.service.context import Context, page_limit, paged
from keystile.service.credits import as_spec, credits_change, credits_from_spec, merged_credits
from keystile.service.snapshots import identity_snapshot
from keystile.service.validate import check_json, json_size, merge_patch


def merged(identity: Identity, update: IdentityUpdate) -> NewIdentity:
    """The settings of ``identity`` with ``update`` applied, as :func:`keystile.service.keys.merged` does."""
    credits = as_spec(identity.credits) if update.credits is KEEP else merged_credits(identity.credits, update.credits)
    meta = identity.meta
    if update.meta is not KEEP:
        meta = {} if update.meta is None else merge_patch(identity.meta, update.meta)
    return NewIdentity(
        owner_id=identity.owner_id,
        meta=meta,
        ratelimits=identity.ratelimits if update.ratelimits is KEEP else update.ratelimits,
        credits=credits,
    )


def _not_found() -> NotFound:
    # The owner id is not echoed: a client may have put a key where the owner id belongs.
    return NotFound("no identity for that owner_id", code="identity_not_found")


class IdentityService:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _checked(self, spec: NewIdentity) -> dict[str, Any]:
        check_json(spec.owner_id, "/owner_id")
        check_json(spec.meta, "/meta")
        if json_size(spec.meta) > MAX_META_BYTES:
            raise InvalidInput("meta is larger than 16 KiB", code="meta_too_large", field="/meta")
        if spec.credits and spec.credits.refill and spec.credits.refill.interval == "daily" and spec.credits.refill.day:
            raise InvalidInput("a daily refill takes no day", code="invalid_refill", field="/credits/refill/day")
        return {"meta": spec.meta, "ratelimits": distinct_ratelimits(spec.ratelimits, "/ratelimits")}

    async def create(self, actor: Actor, spec: NewIdentity) -> Identity:
        """Create the identity of an owner; needs ``identities.write``. Raises :class:`Conflict`
        (``identity_exists``) when the owner has one."""
        actor.principal.require("identities.write")
        fields = self._checked(spec)
        now = self._ctx.now()
        identity = Identity(
            id=new_id("idn", now),
            owner_id=spec.owner_id,
            created_at=now,
            updated_at=now,
            credits=credits_from_spec(spec.credits, None, now),
            **fields,
        )
        async with self._ctx.storage.transaction() as tx:
            if await tx.get_identity(spec.owner_id) is not None:
                raise Conflict("this owner_id has an identity already", code="identity_exists")
            try:
                await tx.insert_identity(identity)
            except Conflict:
                # Another request created it between the check and the insert.
                raise Conflict("this owner_id has an identity already", code="identity_exists") from None
            changes = {"owner_id": identity.owner_id, **identity_snapshot(identity)}
            await self._ctx.audit(tx, actor, "identity.create", identity.id, changes, now)
        await self._ctx.publish([Change("owner", identity.owner_id)])
        return identity

    async def get(self, principal: Principal, owner_id: str) -> Identity:
        """The identity of an owner; needs ``identities.read``. Raises :class:`NotFound`."""
        principal.require("identities.read")
        check_json(owner_id, "owner_id")
        identity = await self._ctx.storage.get_identity(owner_id)
        if identity is None:
            raise _not_found()
        return identity

    async def find(self, principal: Principal, ref: str, permission: str = "identities.read") -> Identity:
        """The identity of the owner ``ref``, else the identity whose id is ``ref`` (callers that know identities
        by their id, as Unkey's API does); needs ``permission``. Raises :class:`NotFound`."""
        principal.require(permission)
        check_json(ref, "identity")
        identity = await self._ctx.storage.get_identity(ref)
        if identity is None and looks_like_id(ref, "idn"):
            found = await self._ctx.storage.list_identities(after=None, limit=1, identity_id=ref)
            identity = found[0] if found else None
        if identity is None:
            raise _not_found()
        return identity

    async def list(
        self, principal: Principal, *, cursor: str | None, limit: int | None, search: str | None = None
    ) -> Page[Identity]:
        """Identities newest first; ``search`` keeps the owner ids that start with it. Needs ``identities.read``."""
        principal.require("identities.read")
        check_json(search, "search")
        size = page_limit(limit)
        items = await self._ctx.storage.list_identities(after=cursor, limit=size + 1, search=search)
        return paged(items, size, lambda identity: identity.id)

    async def update(self, actor: Actor, owner_id: str, update: IdentityUpdate) -> Identity:
        """Change an identity's settings (fields not given stay, ``meta`` and ``credits`` merge); needs
        ``identities.write``."""
        actor.principal.require("identities.write")
        check_json(owner_id, "owner_id")
        async with self._ctx.storage.transaction() as tx:
            current = await tx.get_identity(owner_id)
            if current is None:
                raise _not_found()
            before = identity_snapshot(current)
            spec = merged(current, update)
            fields = self._checked(spec)
            now = self._ctx.now()
            identity = Identity(
                id=current.id,
                owner_id=current.owner_id,
                created_at=current.created_at,
                updated_at=now,
                credits=credits_from_spec(spec.credits, current.credits, now),
                **fields,
            )
            after = identity_snapshot(identity)
            changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
            if not changes:
                return current
            await tx.update_identity(identity)
            await self._ctx.audit(tx, actor, "identity.update", identity.id, changes, now)
        published = [Change("owner", owner_id)]
        if "credits" in changes and current.credits is not None:
            published.append(credits_change(current.credits.id))
        await self._ctx.publish(published)
        return identity

    async def delete(self, actor: Actor, owner_id: str) -> None:
        """Delete an identity (its keys stay, without its limits and credits); needs ``identities.write``."""
        actor.principal.require("identities.write")
        check_json(owner_id, "owner_id")
        async with self._ctx.storage.transaction() as tx:
            current = await tx.get_identity(owner_id)
            if current is None or not await tx.delete_identity(owner_id):
                raise _not_found()
            now = self._ctx.now()
            changes = {"owner_id": owner_id, **identity_snapshot(current)}
            await self._ctx.audit(tx, actor, "identity.delete", current.id, changes, now)
        await self._ctx.publish([Change("owner", owner_id)])
