"""Roles (SPEC V3): named permission sets of an API that keys list in ``roles``."""

from __future__ import annotations

from starlette.responses import Response

from keystile.operations import DELETE_ROLE, LIST_ROLES, PUT_ROLE
from keystile.schemas import RoleList, RoleSpec, role_out
from keystile.server.routing import Call, Operation


async def put_role(call: Call) -> Response:
    spec = await call.body(RoleSpec)
    role, created = await call.ks.apis.put_role(call.actor, call.path("api_id"), spec.name, spec.permissions)
    return call.json(role_out(role), 201 if created else 200)


async def list_roles(call: Call) -> Response:
    roles = await call.ks.apis.list_roles(call.actor.principal, call.path("api_id"))
    return call.json(RoleList([role_out(role) for role in roles]))


async def delete_role(call: Call) -> Response:
    await call.ks.apis.delete_role(call.actor, call.path("api_id"), call.path("name"))
    return call.no_content()


TAG = "Roles"
OPERATIONS = [
    Operation(PUT_ROLE, put_role, "Create a role (201) or replace the one of that name (200)", TAG, "apis.write"),
    Operation(LIST_ROLES, list_roles, "List an API's roles", TAG, "apis.read", errors=(401, 403, 404)),
    Operation(
        DELETE_ROLE,
        delete_role,
        "Delete a role and take it off every key that lists it",
        TAG,
        "apis.write",
        errors=(401, 403, 404),
    ),
]
