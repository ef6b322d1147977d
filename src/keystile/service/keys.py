"""Keys: create (single and bulk), read, list, update, revoke, delete (SPEC K2-K4, R1), reroll (R2), credit
operations (L3), the ``stale`` marker of the rotation policy (R3) and reading a recoverable key back (K3).

The plain-text key exists only in the return value of :meth:`KeyService.create`, its bulk form,
:meth:`KeyService.reroll` and :meth:`KeyService.reveal`; everything that is stored, audited or logged carries its
digest or its ``start`` (a recoverable key is stored sealed, by :class:`~keystile.service.vault.Vault`).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from keystile.core import keys as keyformat
from keystile.core.commands import KEEP, CreditsOp, KeyUpdate, NewKey
from keystile.core.ids import looks_like_id, new_id
from keystile.core.jsonvalues import MAX_META_BYTES
from keystile.core.models import ROOT_API_ID, Api, Credits, Key, KeyFilter, KeyView, Page
from keystile.core.netaddr import normalise_allowlist
from keystile.core.permissions import validate_grant
from keystile.core.ports import Transaction
from keystile.core.timefmt import to_datetime
from keystile.errors import Conflict, InvalidInput, NotFound
from keystile.service import outbox
from keystile.service.apis import ApiService, distinct_ratelimits
from keystile.service.authz import Actor, Principal
from keystile.service.context import Context, key_change, not_found, page_limit, paged
from keystile.service.credits import as_spec, credits_change, credits_from_spec, merged_credits
from keystile.service.snapshots import key_snapshot, time_text
from keystile.service.validate import check_json, json_size, merge_patch, to_ms
from keystile.service.vault import Vault

DAY_MS = 86_400_000
LEAK_ACTION = "key.leak_reported"
"""The audit action of a leak report (SPEC S3), which also fires ``key.leaked``."""


def stale_cutoff(api: Api, now: int) -> int | None:
    """Keys of ``api`` created before this moment are stale (SPEC R3); ``None`` without a rotation policy."""
    return None if api.max_key_age_days is None else now - api.max_key_age_days * DAY_MS


def is_stale(key: Key, api: Api | None, now: int) -> bool:
    cutoff = stale_cutoff(api, now) if api is not None else None
    return cutoff is not None and key.created_at < cutoff


def merged(key: Key, update: KeyUpdate) -> NewKey:
    """The settings of ``key`` with ``update`` applied: ``meta`` and ``credits`` merge into the key's, the rest
    replaces; raises :class:`InvalidInput` for credits that cannot be merged (see :func:`merged_credits`)."""
    credits = as_spec(key.credits) if update.credits is KEEP else merged_credits(key.credits, update.credits)
    meta = key.meta if update.meta is KEEP else {} if update.meta is None else merge_patch(key.meta, update.meta)
    expires_at: datetime | None = None if key.expires_at is None else to_datetime(key.expires_at)
    return NewKey(
        name=key.name if update.name is KEEP else update.name,
        owner_id=key.owner_id if update.owner_id is KEEP else update.owner_id,
        meta=meta,
        permissions=key.permissions if update.permissions is KEEP else update.permissions,
        roles=key.roles if update.roles is KEEP else update.roles,
        expires_at=expires_at if update.expires_at is KEEP else update.expires_at,
        enabled=key.enabled if update.enabled is KEEP else update.enabled,
        credits=credits,
        ratelimits=key.ratelimits if update.ratelimits is KEEP else update.ratelimits,
        ip_allowlist=key.ip_allowlist if update.ip_allowlist is KEEP else update.ip_allowlist,
    )


def _recoverable(api: Api, spec: NewKey, index: int | None) -> bool:
    """Whether a new key is to be stored recoverable: as its API says, unless the key opts out; a key cannot opt
    in when its API is not recoverable (InvalidInput ``api_not_recoverable``, naming the key's ``index``)."""
    if spec.recoverable is None:
        return api.recoverable
    if spec.recoverable and not api.recoverable:
        pointer = "" if index is None else f"/keys/{index}"
        extra = {} if index is None else {"index": index}
        raise InvalidInput(
            "the API does not keep its keys recoverable: make the API recoverable first",
            code="api_not_recoverable",
            field=f"{pointer}/recoverable",
            **extra,
        )
    return spec.recoverable


class KeyService:
    def __init__(self, ctx: Context, apis: ApiService, vault: Vault) -> None:
        self._ctx = ctx
        self._apis = apis
        self._vault = vault

    # -- validation shared by create and update -------------------------------------------------------------

    async def checked(
        self, tx: Transaction, api_id: str, spec: NewKey, prefix: str = "", roles_known: frozenset[str] | None = None
    ) -> dict[str, Any]:
        """The validated, normalised fields of a key spec; ``prefix`` is the JSON pointer of the spec.
        ``roles_known``: the API's roles that exist, when the caller looked them up once for many specs."""
        check_json(spec.name, f"{prefix}/name")
        check_json(spec.owner_id, f"{prefix}/owner_id")
        check_json(spec.meta, f"{prefix}/meta")
        if json_size(spec.meta) > MAX_META_BYTES:
            raise InvalidInput("meta is larger than 16 KiB", code="meta_too_large", field=f"{prefix}/meta")
        permissions = tuple(dict.fromkeys(validate_grant(p) for p in spec.permissions))
        roles = tuple(dict.fromkeys(spec.roles))
        for name in roles:
            known = name in roles_known if roles_known is not None else await tx.get_role(api_id, name) is not None
            if not known:
                raise InvalidInput(f"the API has no role {name!r}", code="unknown_role", field=f"{prefix}/roles")
        return {
            "name": spec.name,
            "owner_id": spec.owner_id,
            "meta": spec.meta,
            "permissions": permissions,
            "roles": roles,
            "expires_at": to_ms(spec.expires_at, f"{prefix}/expires_at") if spec.expires_at else None,
            "enabled": spec.enabled,
            "ratelimits": distinct_ratelimits(spec.ratelimits, f"{prefix}/ratelimits"),
            "ip_allowlist": normalise_allowlist(spec.ip_allowlist),
        }

    def _new_key(self, api: Api, fields: dict[str, Any], spec: NewKey, now: int, kind: str) -> tuple[Key, str]:
        plain = keyformat.generate(api.prefix)
        key = Key(
            id=new_id(kind, now),
            api_id=api.id,
            digest=keyformat.digest(plain),
            start=keyformat.start_of(plain),
            created_at=now,
            updated_at=now,
            credits=credits_from_spec(spec.credits, None, now),
            **fields,
        )
        return key, plain

    # -- create ---------------------------------------------------------------------------------------------

    async def create(self, actor: Actor, api_id: str, spec: NewKey) -> tuple[Key, str]:
        """Create a key; returns its record and the plain-text key (to be shown once, then forgotten)."""
        [created] = await self.create_many(actor, api_id, [spec], bulk=False)
        return created

    async def create_many(
        self, actor: Actor, api_id: str, specs: Sequence[NewKey], *, bulk: bool = True
    ) -> list[tuple[Key, str]]:
        """Create keys all-or-nothing; an error names the failing spec by ``index`` and JSON pointer.

        Keys of a recoverable API (or asking for it) are also stored sealed, in the same transaction; raises
        MasterKeyUnavailable when they cannot be, and InvalidInput (``api_not_recoverable``) for a key that asks
        to be recoverable in an API that is not."""
        api = await self._apis.get(actor.principal, api_id, "keys.write")
        recoverable = [_recoverable(api, spec, index if bulk else None) for index, spec in enumerate(specs)]
        # The data key is fetched (or made, in a transaction of its own) before the keys' transaction begins.
        sealer = await self._vault.sealer() if any(recoverable) else None
        async with self._ctx.storage.transaction() as tx:
            now = self._ctx.now()
            created = []
            for index, spec in enumerate(specs):
                pointer = f"/keys/{index}" if bulk else ""
                try:
                    fields = await self.checked(tx, api_id, spec, pointer)
                except InvalidInput as exc:
                    if bulk:
                        exc.extra["index"] = index
                    raise
                created.append(self._new_key(api, fields, spec, now, "key"))
            await tx.insert_keys([key for key, _ in created])
            for key, _ in created:
                if key.credits is not None:
                    await tx.set_credit_base(key.credits.id, key.credits.remaining)
            if sealer is not None:
                pairs = zip(created, recoverable, strict=True)
                await tx.insert_key_secrets([sealer.seal(key, plain) for (key, plain), keep in pairs if keep])
            for (key, _), keep in zip(created, recoverable, strict=True):
                changes = {"start": key.start, **key_snapshot(key), **({"recoverable": True} if keep else {})}
                await self._ctx.audit(tx, actor, "key.create", key.id, changes, now)
                await outbox.emit(tx, "key.created", key, now)
        await self._ctx.publish([key_change(key.digest) for key, _ in created])
        return created

    # -- read -----------------------------------------------------------------------------------------------

    async def get(self, principal: Principal, key_id: str, permission: str = "keys.read") -> Key:
        """A key the principal may see; raises NotFound (or Forbidden when the permission is held nowhere)."""
        principal.require_any(permission)
        key = await self._ctx.storage.get_key(key_id) if looks_like_id(key_id, "key") else None
        if key is None or key.api_id == ROOT_API_ID or not principal.allows(permission, key.api_id):
            raise not_found("key", key_id, "key", "key_not_found")
        return key

    async def holding(self, principal: Principal, plain: str, permission: str = "keys.read") -> Key:
        """The key whose plain text is ``plain`` (looked up by its digest), if the principal may see it; raises
        NotFound otherwise, as for an unknown key (or Forbidden when the permission is held nowhere)."""
        principal.require_any(permission)
        bundle = await self._ctx.storage.load_for_verify(keyformat.digest(plain))
        key = bundle.key if bundle is not None else None
        if key is None or key.api_id == ROOT_API_ID or not principal.allows(permission, key.api_id):
            raise NotFound("no key matches that key", code="key_not_found")
        return key

    async def views(self, keys: Sequence[Key]) -> builtins.list[KeyView]:
        """Keys with their ``stale`` marker (SPEC R3), which depends on each key's API's rotation policy and on
        the time."""
        now = self._ctx.now()
        apis: dict[str, Api | None] = {}
        for key in keys:
            if key.api_id not in apis:
                apis[key.api_id] = await self._ctx.storage.get_api(key.api_id)
        return [KeyView(key, is_stale(key, apis[key.api_id], now)) for key in keys]

    async def view(self, key: Key) -> KeyView:
        """One key with its ``stale`` marker (see :meth:`views`)."""
        [out] = await self.views([key])
        return out

    async def list(
        self,
        principal: Principal,
        api_id: str,
        where: KeyFilter,
        *,
        stale: bool | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[Key]:
        """Keys of an API, newest first. ``stale`` selects keys older than the API's ``max_key_age_days``."""
        api = await self._apis.get(principal, api_id, "keys.read")
        check_json(where.owner_id, "owner_id")
        check_json(where.search, "q")
        size = page_limit(limit)
        now = self._ctx.now()
        if stale is not None:
            cutoff = stale_cutoff(api, now)
            if cutoff is None:
                if stale:
                    return Page([], None)  # without a rotation policy no key is stale
            else:
                where = replace(where, created_before=cutoff) if stale else replace(where, created_since=cutoff)
        items = await self._ctx.storage.list_keys(api_id, where, at_ms=now, after=cursor, limit=size + 1)
        return paged(items, size, lambda key: key.id)

    # -- change ---------------------------------------------------------------------------------------------

    async def update(self, actor: Actor, key_id: str, update: KeyUpdate) -> Key:
        """Change a key's settings (fields not given stay, ``meta`` and ``credits`` merge); needs ``keys.write``
        for its API."""
        await self.get(actor.principal, key_id, "keys.write")
        async with self._ctx.storage.transaction() as tx:
            current = await tx.get_key(key_id)
            if current is None:
                raise not_found("key", key_id, "key", "key_not_found")
            before = key_snapshot(current)
            spec = merged(current, update)
            fields = await self.checked(tx, current.api_id, spec)
            now = self._ctx.now()
            key = Key(
                id=current.id,
                api_id=current.api_id,
                digest=current.digest,
                start=current.start,
                created_at=current.created_at,
                updated_at=now,
                revoked_at=current.revoked_at,
                last_used_at=current.last_used_at,
                credits=credits_from_spec(spec.credits, current.credits, now),
                rotated_from=current.rotated_from,
                rotated_to=current.rotated_to,
                **fields,
            )
            after = key_snapshot(key)
            changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
            if not changes:
                return current
            await tx.update_key(key)
            if "credits" in changes and key.credits is not None:
                await tx.set_credit_base(key.credits.id, key.credits.remaining)
            await self._ctx.audit(tx, actor, "key.update", key.id, changes, now)
            await outbox.emit(tx, "key.updated", key, now)
            holders = await tx.credit_holders(key.credits.id) if "credits" in changes and key.credits else []
        # A rerolled pair shares its balance: both keys' cached entries show the new credits.
        published = [key_change(digest) for digest in {key.digest, *holders}]
        if "credits" in changes and current.credits is not None:
            published.append(credits_change(current.credits.id))
        await self._ctx.publish(published)
        return key

    async def revoke(self, actor: Actor, key_id: str) -> Key:
        """Revoke a key for good (it then verifies as ``REVOKED``); revoking again changes nothing."""
        await self.get(actor.principal, key_id, "keys.write")
        return await self.mark_revoked(actor, key_id, "key.revoke")

    async def mark_revoked(self, actor: Actor, key_id: str, action: str, details: dict[str, Any] | None = None) -> Key:
        """Revoke a key whose access the caller has checked (root keys use it too).

        ``details`` go into the audit entry beside ``revoked_at``; with them, the action is audited even when the
        key was revoked already (a leak report is worth recording either way).
        """
        async with self._ctx.storage.transaction() as tx:
            current = await tx.get_key(key_id)
            if current is None:
                raise not_found("key", key_id, "key", "key_not_found")
            now = self._ctx.now()
            if current.revoked_at is not None:
                if details is not None:
                    await self._ctx.audit(tx, actor, action, key_id, details, now)
                    if action == LEAK_ACTION:
                        await outbox.emit(tx, "key.leaked", current, now)
                return current
            key = replace(current, revoked_at=now, updated_at=now)
            await tx.update_key(key)
            changes = {"revoked_at": [None, time_text(key.revoked_at)], **(details or {})}
            await self._ctx.audit(tx, actor, action, key.id, changes, now)
            await outbox.emit(tx, "key.revoked", key, now)
            if action == LEAK_ACTION:
                await outbox.emit(tx, "key.leaked", key, now)
        await self._ctx.publish([key_change(key.digest)])
        return key

    async def delete(self, actor: Actor, key_id: str) -> None:
        """Delete a key permanently (audited with a snapshot of its record)."""
        key = await self.get(actor.principal, key_id, "keys.write")
        async with self._ctx.storage.transaction() as tx:
            if not await tx.delete_key(key_id):
                raise not_found("key", key_id, "key", "key_not_found")
            now = self._ctx.now()
            await self._ctx.audit(tx, actor, "key.delete", key_id, {"start": key.start, **key_snapshot(key)}, now)
            await outbox.emit(tx, "key.deleted", key, now)
        await self._ctx.publish([key_change(key.digest)])

    async def reveal(self, actor: Actor, key_id: str) -> tuple[Key, str]:
        """A recoverable key's plain text (SPEC K3), audited as ``key.decrypt`` (without the key); needs
        ``keys.decrypt`` for the key's API. Raises Conflict (``not_recoverable``) for a key that was not stored
        recoverable, or (``key_secret_unreadable``) whose stored secret does not open as this key, and
        MasterKeyUnavailable without the master key that wraps it."""
        key = await self.get(actor.principal, key_id, "keys.decrypt")
        secret = await self._ctx.storage.get_key_secret(key.id)
        if secret is None:
            raise Conflict("the key was not stored recoverable, so it cannot be shown again", code="not_recoverable")
        plain = await self._vault.reveal(key, secret)
        async with self._ctx.storage.transaction() as tx:
            await self._ctx.audit(tx, actor, "key.decrypt", key.id, {"start": key.start}, self._ctx.now())
        return key, plain

    # -- rotation and credits -------------------------------------------------------------------------------

    async def reroll(
        self, actor: Actor, key_id: str, *, grace_period_ms: int = 0, expires_at: datetime | None = None
    ) -> tuple[Key, str]:
        """Replace a key with a new one of the same settings (SPEC R2); returns the new key and its plain text.

        The new key links to the old key's balance (credits move, they are not copied: during the grace period
        both keys draw on that one balance) and expires at ``expires_at`` (default never); the old key expires at
        ``min(its own expiry, now + grace_period_ms)``.
        Raises :class:`Conflict` for a revoked key (``key_revoked``) or one rerolled already (``key_rotated``).
        """
        await self.get(actor.principal, key_id, "keys.write")
        # A recoverable key's successor is recoverable too (SPEC K3): its data key is at hand before the
        # transaction begins.
        sealer = await self._vault.sealer() if await self._ctx.storage.get_key_secret(key_id) else None
        async with self._ctx.storage.transaction() as tx:
            old = await tx.get_key(key_id)
            if old is None:
                raise not_found("key", key_id, "key", "key_not_found")
            if old.revoked_at is not None:
                raise Conflict("a revoked key cannot be rerolled", code="key_revoked")
            if old.rotated_to is not None:
                raise Conflict(f"the key was rerolled already, to {old.rotated_to}", code="key_rotated")
            api = await tx.get_api(old.api_id)
            assert api is not None  # a key's API exists: deleting an API deletes its keys
            now = self._ctx.now()
            plain = keyformat.generate(api.prefix)
            new = replace(
                old,
                id=new_id("key", now),
                digest=keyformat.digest(plain),
                start=keyformat.start_of(plain),
                created_at=now,
                updated_at=now,
                expires_at=to_ms(expires_at, "/expires_at") if expires_at else None,
                last_used_at=None,
                rotated_from=old.id,
                rotated_to=None,
            )
            grace_ends = now + grace_period_ms
            retired = replace(
                old,
                expires_at=grace_ends if old.expires_at is None else min(old.expires_at, grace_ends),
                rotated_to=new.id,
                updated_at=now,
            )
            await tx.reroll_key(retired, new)
            if sealer is not None:
                await tx.insert_key_secrets([sealer.seal(new, plain)])
            changes = {
                "rotated_to": new.id,
                "start": new.start,
                "grace_period_ms": grace_period_ms,
                "expires_at": [time_text(old.expires_at), time_text(retired.expires_at)],
                "new_expires_at": time_text(new.expires_at),
            }
            await self._ctx.audit(tx, actor, "key.reroll", old.id, changes, now)
            await outbox.emit(tx, "key.rerolled", new, now, {"previous": outbox.key_record(retired)})
        await self._ctx.publish([key_change(old.digest), key_change(new.digest)])
        return new, plain

    async def change_credits(self, actor: Actor, key_id: str, op: CreditsOp, amount: int | None) -> Key:
        """Set, add or subtract a key's credits (SPEC L3) atomically in the database; returns the key.

        ``set`` with ``amount`` ``None`` makes the credits unlimited, and ``set`` on unlimited credits creates a
        balance. Subtracting stops at 0. Keys that share the balance (a rerolled pair) see the change together.
        Raises :class:`Conflict` (``credits_unlimited``) to add to or subtract from unlimited credits, and
        :class:`InvalidInput` for ``null`` with ``add`` or ``subtract``.
        """
        if amount is None and op != "set":
            raise InvalidInput(f"{op} needs a number of credits", code="invalid_request", field="/amount")
        await self.get(actor.principal, key_id, "keys.write")
        async with self._ctx.storage.transaction() as tx:
            current = await tx.get_key(key_id)
            if current is None:
                raise not_found("key", key_id, "key", "key_not_found")
            now = self._ctx.now()
            balance = current.credits
            if balance is None:
                if op != "set":
                    raise Conflict(
                        f"the key's credits are unlimited: nothing to {op}; set a number first",
                        code="credits_unlimited",
                    )
                if amount is None:
                    return current  # unlimited already: nothing changes, nothing is audited
                key = replace(current, credits=Credits(new_id("cr", now), amount, None, now), updated_at=now)
                await tx.update_key(key)
                holders = [key.digest]
            elif amount is None:
                key = replace(current, credits=None, updated_at=now)
                holders = await tx.drop_credits(balance.id, now)
            else:
                remaining = await tx.adjust_credits(balance.id, op, amount, now)
                assert remaining is not None  # the balance is locked with the key (get_key)
                key = replace(current, credits=replace(balance, remaining=remaining))
                holders = await tx.credit_holders(balance.id)
            if op == "set" and key.credits is not None:
                await tx.set_credit_base(key.credits.id, key.credits.remaining)
            changes = {
                "op": op,
                "amount": amount,
                "remaining": [balance.remaining if balance else None, key.credits.remaining if key.credits else None],
            }
            await self._ctx.audit(tx, actor, "key.credits", key.id, changes, now)
            await outbox.emit(tx, "key.updated", key, now)
        published = [key_change(digest) for digest in holders]
        await self._ctx.publish([*published, credits_change(balance.id)] if balance is not None else published)
        return key
