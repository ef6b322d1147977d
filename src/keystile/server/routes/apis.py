"""APIs, the keyspaces (SPEC K1): ``/v1/apis`` and ``/v1/apis/{api_id}``."""

from __future__ import annotations

from starlette.responses import Response

from keystile.schemas import ApiCreate, ApiOut, ApiPatch, Page, api_out
from keystile.server.routing import CURSOR, LIMIT, MERGE_PATCH_TYPES, Call, Operation


async def create_api(call: Call) -> Response:
    spec = await call.body(ApiCreate)
    api = await call.ks.apis.create(call.actor, spec)
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
    api = await call.ks.apis.update(call.actor, call.path("api_id"), patch)
    return call.json(api_out(api))


async def delete_api(call: Call) -> Response:
    await call.ks.apis.delete(call.actor, call.path("api_id"))
    return call.no_content()


TAG = "APIs"
OPERATIONS = [
    Operation(
        "POST",
        "/v1/apis",
        create_api,
        "Create an API (a keyspace)",
        TAG,
        "apis.write",
        body=ApiCreate,
        response=ApiOut,
        status=201,
        errors=(400, 401, 403),
    ),
    Operation(
        "GET",
        "/v1/apis",
        list_apis,
        "List the APIs the root key may read, newest first",
        TAG,
        "apis.read",
        response=Page[ApiOut],
        query=(CURSOR, LIMIT),
        errors=(400, 401, 403),
    ),
    Operation("GET", "/v1/apis/{api_id}", get_api, "Show an API", TAG, "apis.read", response=ApiOut),
    Operation(
        "PATCH",
        "/v1/apis/{api_id}",
        update_api,
        "Update an API with a JSON Merge Patch",
        TAG,
        "apis.write",
        body=ApiPatch,
        body_types=MERGE_PATCH_TYPES,
        response=ApiOut,
        errors=(400, 401, 403, 404, 415),
    ),
    Operation(
        "DELETE",
        "/v1/apis/{api_id}",
        delete_api,
        "Delete an API with all its keys and roles (permanent)",
        TAG,
        "apis.write",
        status=204,
    ),
]
