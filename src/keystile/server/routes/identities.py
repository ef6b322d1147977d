"""Identities (SPEC K5): ``/v1/identities`` and ``/v1/identities/{owner_id}``, found by their owner id."""

from __future__ import annotations

from starlette.responses import Response

from keystile.operations import CREATE_IDENTITY, DELETE_IDENTITY, GET_IDENTITY, UPDATE_IDENTITY
from keystile.schemas import IdentityCreate, identity_out, identity_update, new_identity
from keystile.server.routing import Call, Operation


async def create_identity(call: Call) -> Response:
    spec = await call.body(IdentityCreate)
    identity = await call.ks.identities.create(call.actor, new_identity(spec))
    return call.json(identity_out(identity), 201)


async def get_identity(call: Call) -> Response:
    identity = await call.ks.identities.get(call.actor.principal, call.path("owner_id"))
    return call.json(identity_out(identity))


async def update_identity(call: Call) -> Response:
    patch = await call.merge_patch()
    identity = await call.ks.identities.update(call.actor, call.path("owner_id"), identity_update(patch))
    return call.json(identity_out(identity))


async def delete_identity(call: Call) -> Response:
    await call.ks.identities.delete(call.actor, call.path("owner_id"))
    return call.no_content()


TAG = "Identities"
OPERATIONS = [
    Operation(
        CREATE_IDENTITY,
        create_identity,
        "Create the identity of an owner: rate limits and credits shared by all of its keys, in every API",
        TAG,
        "identities.write",
        errors=(400, 401, 403, 409),
        description=(
            "Every key whose `owner_id` is the identity's draws on the identity's credits (unless it has credits "
            "of its own) and applies the identity's rate limits, shared across its keys; a key's own limit replaces "
            "an identity limit of the same name. An owner has at most one identity (409 `identity_exists`)."
        ),
    ),
    Operation(GET_IDENTITY, get_identity, "Show the identity of an owner", TAG, "identities.read"),
    Operation(
        UPDATE_IDENTITY,
        update_identity,
        "Update an identity with a JSON Merge Patch (`null` removes; `meta` and `credits` merge)",
        TAG,
        "identities.write",
        errors=(400, 401, 403, 404, 415),
    ),
    Operation(
        DELETE_IDENTITY,
        delete_identity,
        "Delete an identity (its keys stay, without its limits and credits)",
        TAG,
        "identities.write",
        errors=(401, 403, 404),
    ),
]
