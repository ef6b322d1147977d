"""``apis.*``, ``identities.*`` and ``ratelimit.limit``: Unkey's operations over Keystile's API, identity and
standalone rate-limit services."""

from __future__ import annotations

import math

from msgspec import UNSET

from keystile.core.commands import KEEP, IdentityUpdate, NewApi, NewIdentity
from keystile.core.verify import Code
from keystile.unkey import _wire as w
from keystile.unkey._call import Answer, Call
from keystile.unkey._convert import identity_out, key_out, ratelimits_in, replacing_patch
from keystile.unkey._keys import EMPTY, listed_filter, revealed

# -- APIs -------------------------------------------------------------------------------------------------------------


async def create_api(call: Call) -> Answer:
    spec = call.decode(w.CreateApi)
    api = await call.ks.apis.create(call.actor, NewApi(name=spec.name))
    return Answer(w.ApiCreatedOut(api_id=api.id))


async def get_api(call: Call) -> Answer:
    spec = call.decode(w.ApiById)
    api = await call.ks.apis.get(call.actor.principal, spec.api_id)
    return Answer(w.ApiOut(id=api.id, name=api.name))


async def delete_api(call: Call) -> Answer:
    spec = call.decode(w.ApiById)
    await call.ks.apis.delete(call.actor, spec.api_id)
    return Answer(EMPTY)


async def list_keys(call: Call) -> Answer:
    spec = call.decode(w.ListKeys)
    page = await call.ks.keys.list(
        call.actor.principal, spec.api_id, listed_filter(spec.external_id), cursor=spec.cursor, limit=spec.limit
    )
    identities = {}
    for owner in {key.owner_id for key in page.items if key.owner_id is not None}:
        identities[owner] = await call.owner_identity(owner)
    # With decrypt, each recoverable key is read back (audited once per key, as reading one is).
    plains = [await revealed(call, key) if spec.decrypt else None for key in page.items]
    data = [
        key_out(key, identities.get(key.owner_id) if key.owner_id else None, plain)
        for key, plain in zip(page.items, plains, strict=True)
    ]
    return Answer(data, paged=True, cursor=page.next_cursor)


# -- identities -------------------------------------------------------------------------------------------------------


async def create_identity(call: Call) -> Answer:
    spec = call.decode(w.CreateIdentity)
    identity = await call.ks.identities.create(
        call.actor,
        NewIdentity(owner_id=spec.external_id, meta=spec.meta or {}, ratelimits=ratelimits_in(spec.ratelimits)),
    )
    return Answer(w.IdentityCreatedOut(identity_id=identity.id))


async def get_identity(call: Call) -> Answer:
    spec = call.decode(w.IdentityRef)
    return Answer(identity_out(await call.ks.identities.find(call.actor.principal, spec.identity)))


async def list_identities(call: Call) -> Answer:
    spec = call.decode(w.ListIdentities)
    page = await call.ks.identities.list(
        call.actor.principal, cursor=spec.cursor, limit=spec.limit, search=spec.search or None
    )
    return Answer([identity_out(identity) for identity in page.items], paged=True, cursor=page.next_cursor)


async def update_identity(call: Call) -> Answer:
    spec = call.decode(w.UpdateIdentity)
    current = await call.ks.identities.find(call.actor.principal, spec.identity, "identities.write")
    meta = KEEP if spec.meta is UNSET else None if spec.meta is None else replacing_patch(current.meta, spec.meta)
    ratelimits = KEEP if spec.ratelimits is UNSET else ratelimits_in(spec.ratelimits)
    identity = await call.ks.identities.update(
        call.actor, current.owner_id, IdentityUpdate(meta=meta, ratelimits=ratelimits)
    )
    return Answer(identity_out(identity))


async def delete_identity(call: Call) -> Answer:
    spec = call.decode(w.IdentityRef)
    current = await call.ks.identities.find(call.actor.principal, spec.identity, "identities.write")
    await call.ks.identities.delete(call.actor, current.owner_id)
    return Answer(None)


# -- standalone rate limits -------------------------------------------------------------------------------------------


async def ratelimit_limit(call: Call) -> Answer:
    # Namespaces need not be created first: a bucket exists from its first use (as Unkey creates namespaces).
    spec = call.decode(w.RatelimitLimit)
    outcome = await call.ks.ratelimits.limit(
        call.actor.principal,
        spec.namespace,
        spec.identifier,
        limit=spec.limit,
        duration_ms=spec.duration,
        cost=spec.cost,
    )
    [state] = outcome.ratelimits
    return Answer(
        w.RatelimitLimitOut(
            limit=state.limit,
            remaining=state.remaining,
            reset=math.ceil(state.reset_at),
            success=outcome.code == Code.VALID,
        )
    )
