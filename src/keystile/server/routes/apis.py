"""APIs, the keyspaces (SPEC K1): ``/v1/apis`` and ``/v1/apis/{api_id}``."""

from __future__ import annotations

from starlette.responses import Response

from keystile.operations import CREATE_API, DELETE_API, GET_API, LIST_APIS, UPDATE_API
from keystile.schemas import ApiCreate, Page, api_out, api_update, new_api
from keystile.server.routing import Call, Operation


async def create_api(call: Call) -> Response:
    spec = await call.body(ApiCreate)
    api = await call.ks.apis.create(call.actor, new_api(spec))
    return call.json(api_out(api), 201)


async def list_apis(call: Call) -> Response:
    page = await call.ks.apis.list(
        call.actor.principal, cursor=call.params.get("cursor"), limit=call.params.get("limit")
    )
    return call.json(Page([api_out(api) for api in page.items], page.next_cursor))


async def get_api(call: Call) -> Response:
    api = await call.ks.apis.get(call.actor.principal, call.path("api_id"))
    return call.json(api_out(api))


async def update_api(call: Call) -> Response:
    patch = await call.merge_patch()
    api = await call.ks.apis.update(call.actor, call.path("api_id"), api_update(patch))
    return call.json(api_out(api))


async def delete_api(call: Call) -> Response:
    await call.ks.apis.delete(call.actor, call.path("api_id"))
    return call.no_content()


TAG = "APIs"
OPERATIONS = [
    Operation(CREATE_API, create_api, "Create an API (a keyspace)", TAG, "apis.write", errors=(400, 401, 403)),
    Operation(
        LIST_APIS,
        list_apis,
        "List the APIs the root key may read, newest first",
        TAG,
        "apis.read",
        errors=(400, 401, 403),
    ),
    Operation(GET_API, get_api, "Show an API", TAG, "apis.read"),
    Operation(
        UPDATE_API,
        update_api,
        "Update an API with a JSON Merge Patch",
        TAG,
        "apis.write",
        errors=(400, 401, 403, 404, 415),
    ),
    Operation(DELETE_API, delete_api, "Delete an API with all its keys and roles (permanent)", TAG, "apis.write"),
]
