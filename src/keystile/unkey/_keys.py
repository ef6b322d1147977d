"""``keys.*``: Unkey's key operations over Keystile's key and verification services."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from msgspec import UNSET

from keystile.core.commands import KEEP, CreditsOp, ImportedKey, KeyHash, KeyUpdate, NewKey
from keystile.core.keys import DEFAULT_PREFIX
from keystile.core.models import Key, KeyFilter
from keystile.core.timefmt import to_datetime
from keystile.core.verify import Code, KeyCheck, VerifyResult
from keystile.errors import Conflict, InvalidInput
from keystile.unkey import _wire as w
from keystile.unkey._call import Answer, Call
from keystile.unkey._convert import (
    CODES,
    credits_in,
    credits_out,
    credits_update,
    key_out,
    owner_identity,
    permissions_out,
    ratelimit_id,
    ratelimits_in,
    replacing_patch,
)
from keystile.unkey._errors import DOCS, UnkeyError

EMPTY = w.Empty()


def not_offered(detail: str) -> UnkeyError:
    """A 400 for a part of Unkey's API that Keystile does not offer, saying why."""
    return UnkeyError(400, "Bad Request", DOCS + "unkey/application/invalid_input", detail)


async def create_key(call: Call) -> Answer:
    spec = call.decode(w.CreateKey)
    if spec.prefix is not None:
        # Keystile's prefix belongs to the API (every key of an API carries it); a key cannot choose its own.
        api = await call.ks.apis.get(call.actor.principal, spec.api_id, "keys.write")
        if spec.prefix != api.prefix:
            raise InvalidInput(
                f"keys of this API carry the prefix {api.prefix!r}: set the API's prefix (PATCH /v1/apis/{{id}}, "
                f"default {DEFAULT_PREFIX!r}) rather than each key's",
                code="invalid_prefix",
                field="/prefix",
            )
    new = NewKey(
        name=spec.name,
        owner_id=spec.external_id,
        meta=spec.meta or {},
        permissions=spec.permissions or (),
        roles=spec.roles or (),
        expires_at=to_datetime(spec.expires) if spec.expires is not None else None,
        enabled=True if spec.enabled is None else spec.enabled,
        credits=credits_in(spec.credits),
        ratelimits=ratelimits_in(spec.ratelimits),
        # Unkey's SDKs send false unless asked: a key is kept recoverable when it asks to be (and its API keeps
        # keys recoverable: PATCH /v1/apis/{id} with recoverable: true).
        recoverable=spec.recoverable,
    )
    key, plain = await call.ks.keys.create(call.actor, spec.api_id, new)
    return Answer(w.KeyCreatedOut(key_id=key.id, key=plain))


async def verify_key(call: Call) -> Answer:
    spec = call.decode(w.VerifyKey)
    if spec.migration_id is not None:
        raise not_offered(
            "migrationId is not needed here: keys imported by digest (keys.migrateKeys) verify as they are"
        )
    api_id = None
    if spec.keyspaces:
        if len(spec.keyspaces) > 1:
            raise InvalidInput("give at most one keyspace (an API id)", code="invalid_request", field="/keyspaces")
        api_id = spec.keyspaces[0]
    for index, limit in enumerate(spec.ratelimits or ()):
        if limit.limit is not None or limit.duration is not None:
            raise InvalidInput(
                "a rate limit is checked with the limit and duration the key or its identity has; "
                "set them on the key (keys.updateKey) rather than per request",
                code="invalid_request",
                field=f"/ratelimits/{index}",
            )
    check = KeyCheck(
        spec.key,
        api_id=api_id,
        permissions=spec.permissions,
        cost=spec.credits.cost if spec.credits is not None else None,
        ratelimits=[(r.name, 1 if r.cost is None else r.cost) for r in spec.ratelimits] if spec.ratelimits else None,
        tags=spec.tags or (),
    )
    result = await call.ks.verification.verify(call.actor.principal, check, call.request_id)
    return Answer(await _verify_out(call, result))


async def _verify_out(call: Call, result: VerifyResult) -> w.VerifyOut:
    code = CODES.get(result.code, "NOT_FOUND")
    entry = result.entry
    if entry is None or code == "NOT_FOUND":
        return w.VerifyOut(valid=False, code="NOT_FOUND")  # says nothing more about a key it may not see
    key = entry.key
    own = list(key.permissions)
    spent = result.spent
    remaining = spent.remaining if spent is not None else entry.credits.remaining if entry.credits else None
    limits = None
    if spent is not None and spent.ratelimits:
        limits = []
        for state in spent.ratelimits:
            found = entry.limits.get(state.name)
            # The bucket's reference is "k:<key id>:<name>" or "i:<identity id>:<name>".
            holder = found[1] if found is not None else f"k:{key.id}:{state.name}"
            limits.append(
                w.VerifyRatelimitOut(
                    exceeded=state.remaining <= 0 and result.code == Code.RATE_LIMITED,
                    id=ratelimit_id(holder[2 : len(holder) - len(state.name) - 1], state.name),
                    name=state.name,
                    limit=state.limit,
                    duration=found[0].duration_ms if found is not None else 0,
                    reset=math.ceil(state.reset_at),
                    remaining=state.remaining,
                    auto_apply=found[0].auto_apply if found is not None else False,
                )
            )
    return w.VerifyOut(
        valid=result.valid,
        code=code,
        key_id=key.id,
        name=key.name,
        meta=key.meta or None,
        expires=entry.expires_at,
        credits=remaining,
        enabled=key.enabled,
        permissions=own + sorted(entry.grants.exact.difference(own)),
        roles=list(entry.role_names),
        identity=owner_identity(key.owner_id, await call.owner_identity(key.owner_id)),
        ratelimits=limits,
    )


async def get_key(call: Call) -> Answer:
    spec = call.decode(w.GetKey)
    key = await call.ks.keys.get(call.actor.principal, spec.key_id)
    plain = await revealed(call, key) if spec.decrypt else None
    return Answer(key_out(key, await call.owner_identity(key.owner_id), plain))


async def revealed(call: Call, key: Key) -> str | None:
    """A key's plain text (needs ``keys.decrypt``; audited as ``key.decrypt``), or ``None`` for a key that opted
    out of being recoverable. Its API not keeping keys recoverable at all is a 412, as in Unkey."""
    try:
        _, plain = await call.ks.keys.reveal(call.actor, key.id)
    except Conflict as exc:
        if exc.code != "not_recoverable":
            raise
        api = await call.ks.storage.get_api(key.api_id)  # the caller may decrypt this key: reveal checked it
        if api is None or not api.recoverable:
            raise Conflict(
                "the API of this key does not keep its keys recoverable", code="api_not_recoverable"
            ) from None
        return None
    return plain


async def whoami(call: Call) -> Answer:
    spec = call.decode(w.Whoami)
    key = await call.ks.keys.holding(call.actor.principal, spec.key)
    return Answer(key_out(key, await call.owner_identity(key.owner_id)))


async def update_key(call: Call) -> Answer:
    spec = call.decode(w.UpdateKey)
    meta = KEEP if spec.meta is UNSET else spec.meta
    if isinstance(meta, dict):
        # Unkey replaces the whole object; Keystile's update takes a merge patch of it.
        current = await call.ks.keys.get(call.actor.principal, spec.key_id, "keys.write")
        meta = replacing_patch(current.meta, meta)
    update = KeyUpdate(
        name=KEEP if spec.name is UNSET else spec.name,
        owner_id=KEEP if spec.external_id is UNSET else spec.external_id,
        meta=meta,
        expires_at=KEEP if spec.expires is UNSET else None if spec.expires is None else to_datetime(spec.expires),
        credits=KEEP if spec.credits is UNSET else credits_update(spec.credits),
        ratelimits=KEEP if spec.ratelimits is UNSET else ratelimits_in(spec.ratelimits),
        enabled=KEEP if spec.enabled is UNSET else spec.enabled,
        roles=KEEP if spec.roles is UNSET else spec.roles,
        permissions=KEEP if spec.permissions is UNSET else spec.permissions,
    )
    await call.ks.keys.update(call.actor, spec.key_id, update)
    return Answer(EMPTY)


async def delete_key(call: Call) -> Answer:
    spec = call.decode(w.DeleteKey)
    if spec.permanent:
        await call.ks.keys.delete(call.actor, spec.key_id)
    else:
        # Unkey's soft delete keeps the record and stops the key: Keystile's revoke.
        await call.ks.keys.revoke(call.actor, spec.key_id)
    return Answer(EMPTY)


async def reroll_key(call: Call) -> Answer:
    spec = call.decode(w.RerollKey)
    old = await call.ks.keys.get(call.actor.principal, spec.key_id, "keys.write")
    new, plain = await call.ks.keys.reroll(
        call.actor,
        spec.key_id,
        grace_period_ms=spec.expiration or 0,
        # Unkey's new key keeps the old one's expiry; Keystile's takes the one it is given.
        expires_at=to_datetime(old.expires_at) if old.expires_at is not None else None,
    )
    return Answer(w.KeyCreatedOut(key_id=new.id, key=plain))


_OPS: dict[str, CreditsOp] = {"set": "set", "increment": "add", "decrement": "subtract"}


async def update_credits(call: Call) -> Answer:
    spec = call.decode(w.UpdateCredits)
    value = None if spec.value is UNSET else spec.value
    if value is None and spec.operation != "set":
        raise InvalidInput(f"{spec.operation} needs a value", code="invalid_request", field="/value")
    op = _OPS[spec.operation]
    key = await call.ks.keys.change_credits(call.actor, spec.key_id, op, value)
    return Answer(credits_out(key.credits) or w.CreditsOut(remaining=None))


# -- permissions and roles ------------------------------------------------------------------------------------------


async def _set_permissions(call: Call, key_id: str, permissions: Sequence[str]) -> Answer:
    key = await call.ks.keys.update(call.actor, key_id, KeyUpdate(permissions=list(dict.fromkeys(permissions))))
    return Answer(permissions_out(key.permissions))


async def add_permissions(call: Call) -> Answer:
    spec = call.decode(w.KeyPermissions)
    key = await call.ks.keys.get(call.actor.principal, spec.key_id, "keys.write")
    return await _set_permissions(call, spec.key_id, [*key.permissions, *spec.permissions])


async def remove_permissions(call: Call) -> Answer:
    spec = call.decode(w.KeyPermissions)
    key = await call.ks.keys.get(call.actor.principal, spec.key_id, "keys.write")
    gone = set(spec.permissions)
    return await _set_permissions(call, spec.key_id, [p for p in key.permissions if p not in gone])


async def set_permissions(call: Call) -> Answer:
    spec = call.decode(w.KeyPermissions)
    return await _set_permissions(call, spec.key_id, spec.permissions)


async def _set_roles(call: Call, key_id: str, roles: Sequence[str]) -> Answer:
    key = await call.ks.keys.update(call.actor, key_id, KeyUpdate(roles=list(dict.fromkeys(roles))))
    return Answer(await _roles_out(call, key))


async def _roles_out(call: Call, key: Key) -> list[w.RoleOut]:
    # The key's API's roles, read after the update has checked that the caller may change the key.
    defined = {role.name: role for role in await call.ks.storage.list_roles(key.api_id)}
    out = []
    for name in key.roles:
        role = defined.get(name)
        granted = permissions_out(role.permissions) if role is not None else []
        out.append(w.RoleOut(id=name, name=name, permissions=granted))
    return out


async def add_roles(call: Call) -> Answer:
    spec = call.decode(w.KeyRoles)
    key = await call.ks.keys.get(call.actor.principal, spec.key_id, "keys.write")
    return await _set_roles(call, spec.key_id, [*key.roles, *spec.roles])


async def remove_roles(call: Call) -> Answer:
    spec = call.decode(w.KeyRoles)
    key = await call.ks.keys.get(call.actor.principal, spec.key_id, "keys.write")
    gone = set(spec.roles)
    return await _set_roles(call, spec.key_id, [r for r in key.roles if r not in gone])


async def set_roles(call: Call) -> Answer:
    spec = call.decode(w.KeyRoles)
    return await _set_roles(call, spec.key_id, spec.roles)


_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


async def migrate_keys(call: Call) -> Answer:
    """Keys imported by their digests (Keystile's import, all or nothing): Unkey keeps base64 SHA-256 digests, and
    hex ones are taken too. ``migrationId`` names a hashing scheme of Unkey's own and is not needed here."""
    spec = call.decode(w.MigrateKeys)
    entries = [
        ImportedKey(
            spec=NewKey(
                name=given.name,
                owner_id=given.external_id,
                meta=given.meta or {},
                permissions=given.permissions or (),
                roles=given.roles or (),
                expires_at=to_datetime(given.expires) if given.expires is not None else None,
                enabled=True if given.enabled is None else given.enabled,
                credits=credits_in(given.credits),
                ratelimits=ratelimits_in(given.ratelimits),
            ),
            hash=KeyHash(given.hash, "sha256_hex" if _HEX_DIGEST.fullmatch(given.hash) else "sha256_base64"),
        )
        for given in spec.keys
    ]
    result = await call.ks.imports.import_keys(call.actor, spec.api_id, entries)
    migrated, failed = [], []
    for item in result.items:
        digest = spec.keys[item.index].hash
        if item.status == "imported":
            migrated.append(w.MigratedOut(hash=digest, key_id=item.id))
        else:
            failed.append(digest)  # the API holds it already: Unkey lists hashes it did not migrate as failed
    return Answer(w.MigrateOut(migrated=migrated, failed=failed))


def listed_filter(external_id: str | None) -> KeyFilter:
    """Keys as Unkey lists them: not deleted (Keystile: not revoked), optionally of one owner."""
    return KeyFilter(owner_id=external_id, revoked=False)
