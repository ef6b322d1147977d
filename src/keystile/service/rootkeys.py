"""Root keys (SPEC K6): the keys of the management API, kept as keys of the reserved internal API."""

from __future__ import annotations

from keystile.core import keys as keyformat
from keystile.core.commands import NewRootKey
from keystile.core.ids import looks_like_id, new_id
from keystile.core.models import ROOT_API_ID, Key, KeyFilter, Page
from keystile.core.permissions import Grants
from keystile.core.verify import CachedKey
from keystile.errors import Forbidden, InvalidInput, Unauthenticated
from keystile.service.authz import CLI_ACTOR, Actor, Principal, holds, validate_root_permission
from keystile.service.context import Context, key_change, not_found, page_limit, paged
from keystile.service.keys import KeyService
from keystile.service.snapshots import root_key_snapshot
from keystile.service.validate import check_json, to_ms

_REJECTED = "the root key is missing, unknown, revoked or expired"


# Root keys' principals by their cache entry: built once per entry (their API scopes are memoised inside), and
# never outliving a change to the key, which replaces the entry. Bounded: root keys are few, but entries churn.
_PRINCIPALS_KEPT = 1024


def within(principal: Principal, key: Key) -> bool:
    """Whether ``principal`` holds every permission of the root key ``key`` (its own key, always), and so may see
    and revoke it, as it may only create root keys within its own permissions."""
    return key.id == principal.id or all(holds(principal, permission) for permission in key.permissions)


class RootKeyService:
    def __init__(self, ctx: Context, keys: KeyService) -> None:
        self._ctx = ctx
        self._keys = keys
        self._principals: dict[CachedKey, Principal] = {}

    async def authenticate(self, key: str) -> Principal:
        """The principal of a root key (from the cache when it is there); raises :class:`Unauthenticated` (one
        answer for every failure) and ``StorageError`` when it is not cached and storage is unreachable."""
        if not key.startswith(keyformat.ROOT_PREFIX + "_"):
            raise Unauthenticated(_REJECTED, code="invalid_root_key")
        result = await self._ctx.verifier.verify(key, api_id=ROOT_API_ID)
        entry = result.entry
        if not result.valid or entry is None:
            raise Unauthenticated(_REJECTED, code="invalid_root_key")
        principal = self._principals.get(entry)
        if principal is None:
            if len(self._principals) >= _PRINCIPALS_KEPT:
                self._principals.clear()
            principal = self._principals[entry] = Principal(entry.key.id, entry.grants)
        return principal

    async def principal(self, root_key_id: str) -> Principal:
        """The principal of the root key with this id, read afresh (a dashboard session names its root key by id,
        never holds the key); raises :class:`Unauthenticated` once the key is revoked, expired, disabled or gone."""
        key = await self._ctx.storage.get_key(root_key_id) if looks_like_id(root_key_id, "rk") else None
        if (
            key is None
            or key.api_id != ROOT_API_ID
            or key.revoked_at is not None
            or not key.enabled
            or (key.expires_at is not None and key.expires_at <= self._ctx.now())
        ):
            raise Unauthenticated(_REJECTED, code="invalid_root_key")
        return Principal(key.id, Grants(key.permissions))

    async def create(self, actor: Actor, spec: NewRootKey) -> tuple[Key, str]:
        """Create a root key; a root key can never grant a permission it does not hold itself."""
        actor.principal.require("root_keys.write")
        check_json(spec.name, "/name")
        permissions = tuple(dict.fromkeys(validate_root_permission(p) for p in spec.permissions))
        if not permissions:
            raise InvalidInput("a root key needs at least one permission", code="invalid_request", field="/permissions")
        missing = [p for p in permissions if not holds(actor.principal, p)]
        if missing:
            raise Forbidden(
                f"a root key cannot grant what it does not hold: {', '.join(missing)}",
                code="insufficient_permissions",
            )
        now = self._ctx.now()
        plain = keyformat.generate(keyformat.ROOT_PREFIX)
        key = Key(
            id=new_id("rk", now),
            api_id=ROOT_API_ID,
            digest=keyformat.digest(plain),
            start=keyformat.start_of(plain),
            created_at=now,
            updated_at=now,
            name=spec.name,
            permissions=permissions,
            expires_at=to_ms(spec.expires_at, "/expires_at") if spec.expires_at else None,
        )
        async with self._ctx.storage.transaction() as tx:
            await tx.insert_keys([key])
            changes = root_key_snapshot(key)
            await self._ctx.audit(tx, actor, "root_key.create", key.id, changes, now)
        await self._ctx.publish([key_change(key.digest)])
        return key, plain

    async def list(self, principal: Principal, *, cursor: str | None, limit: int | None) -> Page[Key]:
        """Root keys newest first: only those whose permissions ``principal`` holds all of (``*`` sees all)."""
        principal.require("root_keys.write")
        size = page_limit(limit)
        at_ms = self._ctx.now()
        shown: list[Key] = []
        after = cursor
        # Keys outside the caller's permissions are skipped, so fetch on until the page (and one more, which says
        # that another page exists) is full or the keys run out.
        while len(shown) <= size:
            batch = await self._ctx.storage.list_keys(
                ROOT_API_ID, KeyFilter(), at_ms=at_ms, after=after, limit=size + 1
            )
            shown.extend(key for key in batch if within(principal, key))
            if len(batch) <= size:
                break
            after = batch[-1].id
        return paged(shown, size, lambda key: key.id)

    async def revoke(self, actor: Actor, root_key_id: str) -> Key:
        """Revoke a root key (it may be the caller's own); raises :class:`NotFound` for one that does not exist
        or has a permission the caller lacks."""
        actor.principal.require("root_keys.write")
        key = await self._ctx.storage.get_key(root_key_id) if looks_like_id(root_key_id, "rk") else None
        # NOT_FOUND, not FORBIDDEN, for a stronger root key: a refusal would tell that it exists (SPEC K6).
        if key is None or key.api_id != ROOT_API_ID or not within(actor.principal, key):
            raise not_found("root key", root_key_id, "rk", "root_key_not_found")
        return await self._keys.mark_revoked(actor, root_key_id, "root_key.revoke")

    async def any_active(self) -> bool:
        """Whether an unrevoked root key exists."""
        found = await self._ctx.storage.list_keys(
            ROOT_API_ID, KeyFilter(revoked=False), at_ms=self._ctx.now(), after=None, limit=1
        )
        return bool(found)

    async def bootstrap(self) -> tuple[Key, str] | None:
        """Create the first root key (permission ``*``) unless an active one exists; ``None`` if one does."""
        if await self.any_active():
            return None
        return await self.create(CLI_ACTOR, NewRootKey(name="initial root key", permissions=["*"]))
