"""Root keys (SPEC K6): the keys of the management API itself."""

from __future__ import annotations

from starlette.responses import Response

from keystile.operations import CREATE_ROOT_KEY, LIST_ROOT_KEYS, REVOKE_ROOT_KEY
from keystile.schemas import Page, RootKeyCreate, new_root_key, root_key_created, root_key_out
from keystile.server.routing import Call, Operation


async def create_root_key(call: Call) -> Response:
    spec = await call.body(RootKeyCreate)
    key, plain = await call.ks.root_keys.create(call.actor, new_root_key(spec))
    return call.json(root_key_created(key, plain), 201)


async def list_root_keys(call: Call) -> Response:
    page = await call.ks.root_keys.list(
        call.actor.principal, cursor=call.params.get("cursor"), limit=call.params.get("limit")
    )
    return call.json(Page([root_key_out(key) for key in page.items], page.next_cursor))


async def revoke_root_key(call: Call) -> Response:
    key = await call.ks.root_keys.revoke(call.actor, call.path("root_key_id"))
    return call.json(root_key_out(key))


TAG = "Root keys"
OPERATIONS = [
    Operation(
        CREATE_ROOT_KEY,
        create_root_key,
        "Create a root key (never with a permission the caller lacks); the answer holds it, this once",
        TAG,
        "root_keys.write",
        errors=(400, 401, 403),
    ),
    Operation(
        LIST_ROOT_KEYS,
        list_root_keys,
        "List the root keys whose permissions the caller holds all of, newest first",
        TAG,
        "root_keys.write",
        errors=(400, 401, 403),
    ),
    Operation(
        REVOKE_ROOT_KEY,
        revoke_root_key,
        "Revoke a root key within the caller's permissions (its own included); others answer 404",
        TAG,
        "root_keys.write",
        errors=(401, 403, 404),
    ),
]
