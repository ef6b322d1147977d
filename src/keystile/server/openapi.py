"""The OpenAPI 3.1 document of the HTTP API, generated from the route declarations and the msgspec structs.

Schemas come from :func:`msgspec.json.schema_components`, so the document cannot drift from what the server
decodes and encodes; every operation lists its parameters, body, answers (problems included) and security.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from keystile import __version__
from keystile.errors import InvalidInput
from keystile.schemas import (
    NO_NUL,
    RULES,
    ApiOut,
    BulkKeysCreated,
    IdentityOut,
    KeyCreated,
    Problem,
    RoleName,
    RoleOut,
    RootKeyCreated,
)
from keystile.server.docs import render
from keystile.server.examples import example
from keystile.server.routing import Operation, Param

REF = "#/components/schemas/{name}"
SECURITY_SCHEME = "rootKey"
_PATH_PARAM = re.compile(r"\{(\w+)\}")
_GENERIC_NAME = re.compile(r"^(\w+?)_(\w+)_$")
_KINDS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "date-time": {"type": "string", "format": "date-time"},
}
_ID = "^{kind}_[0-9A-Za-z]{{1,40}}$"
# Path parameters by name, as the services find them: a value of another shape is simply not found (404).
_PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "api_id": {"type": "string", "pattern": _ID.format(kind="api")},
    "key_id": {"type": "string", "pattern": _ID.format(kind="key")},
    "root_key_id": {"type": "string", "pattern": _ID.format(kind="rk")},
    "owner_id": {"type": "string", "minLength": 1, "maxLength": 256, **NO_NUL},
    "name": msgspec.json.schema(RoleName),
}
_ERRORS = {
    400: "The request is malformed or breaks a rule (`field`, `position` or `index` say where).",
    401: "The root key is missing (`missing_root_key`), unknown, revoked or expired (`invalid_root_key`), or two"
    " different `Authorization` headers came (`ambiguous_credentials`).",
    403: "The root key lacks the permission for every API.",
    404: "No such object, or one the root key may not see.",
    409: "The request clashes with the current state.",
    415: "The body is not JSON.",
    503: "Storage is unreachable (`storage_unavailable`), or the master key of recoverable keys is missing or not "
    "the one that wraps them (`master_key_unavailable`).",
}
_DEFAULT_ERROR = (
    "Any other problem: a body that did not arrive in time (408), a body over the size limit (413), headers over "
    "the size limit (431), a server fault (500), storage or the master key unavailable (503)."
)
_SUCCESS = {200: "OK", 201: "Created", 204: "No content"}
# What a created object lets a client call next (OpenAPI links): the path parameters it supplies. Every operation
# whose path takes exactly these parameters is linked from the operations that create the object.
_CREATED: dict[Any, dict[str, str]] = {
    ApiOut: {"api_id": "$response.body#/id"},
    KeyCreated: {"key_id": "$response.body#/id"},
    RootKeyCreated: {"root_key_id": "$response.body#/id"},
    IdentityOut: {"owner_id": "$response.body#/owner_id"},
    RoleOut: {"api_id": "$response.body#/api_id", "name": "$response.body#/name"},
    BulkKeysCreated: {"key_id": "$response.body#/items/0/id"},
}
DESCRIPTION = (
    "Keystile issues, verifies and revokes API keys. Management routes take a root key as "
    "`Authorization: Bearer <root key>`. Errors are RFC 9457 `application/problem+json` documents with a stable "
    "`code`. Times are RFC 3339 UTC strings; lists are newest first and page with `cursor`/`next_cursor`. Whole "
    "numbers are JSON integers: `5`, never `5.0` or `5e0` (a 400 `invalid_request` naming the field)."
)


def _rename(name: str) -> str:
    """``Page_KeyOut_`` (msgspec's name for ``Page[KeyOut]``) -> ``KeyOutPage``."""
    match = _GENERIC_NAME.match(name)
    return f"{match[2]}{match[1]}" if match else name


def _rename_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (REF.format(name=_rename(value.rsplit("/", 1)[1])) if key == "$ref" else _rename_refs(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(item) for item in node]
    return node


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS.get(name, {"type": "string"})}
        for name in _PATH_PARAM.findall(operation.path)
    ]
    params.extend(_query(param) for param in operation.query)
    return params


def _query(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": "query",
        "required": False,
        "description": param.description,
        "schema": {**_KINDS[param.kind], **param.schema},
    }


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(name="Problem")}}},
    }


def _links(op: Operation, operations: Sequence[Operation]) -> dict[str, Any]:
    supplied = _CREATED.get(op.response) if op.status == 201 else None
    if supplied is None:
        return {}
    return {
        other.operation_id: {"operationId": other.operation_id, "parameters": supplied}
        for other in operations
        if set(_PATH_PARAM.findall(other.path)) == set(supplied)
    }


def _operation(op: Operation, schema: dict[Any, dict[str, Any]], links: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    description = op.description
    if op.permission is not None:
        description = f"Needs the root-key permission `{op.permission}`. {description}".strip()
    if description:
        doc["description"] = description
    parameters = _parameters(op)
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {
                content_type: _media(schema[op.body], example(op.body), op.operation_id)
                for content_type in op.body_types
            },
        }
    doc["responses"] = dict(op.responses) if op.responses is not None else _responses(op, schema)
    if links:
        doc["responses"][str(op.status)]["links"] = links
    doc["security"] = [] if op.public else [{SECURITY_SCHEME: []}]
    return doc


def _media(schema: dict[str, Any], value: Any, name: str) -> dict[str, Any]:
    """A media type object: the schema, and the example of the same struct (used by /docs and by schemathesis)."""
    if value is None:
        return {"schema": schema}
    return {"schema": schema, "examples": {name: {"value": value}}}


def _responses(op: Operation, schema: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in (op.status, *op.also):
        answer: dict[str, Any] = {"description": _SUCCESS.get(status, "OK")}
        if op.response is not None:
            value = example(op.response, op.operation_id)
            answer["content"] = {op.media_type: _media(schema[op.response], value, op.operation_id)}
        responses[str(status)] = answer
    for status in op.errors:
        responses[str(status)] = _problem(_ERRORS[status])
    responses["default"] = _problem(_DEFAULT_ERROR)
    return responses


def root_permission_schema() -> dict[str, Any]:
    """The root-key permissions the service accepts, as a JSON schema: the vocabulary, or one of its API-scoped
    permissions as ``api.<api_id>.<permission>``. Asked of the validator itself, so the two cannot drift."""
    from keystile.service.authz import ROOT_PERMISSIONS, validate_root_permission

    def accepted(permission: str) -> bool:
        try:
            validate_root_permission(permission)
        except InvalidInput:
            return False
        return True

    groups = dict.fromkeys(permission.split(".")[0] for permission in ROOT_PERMISSIONS)
    vocabulary = [*ROOT_PERMISSIONS, *(f"{group}.*" for group in groups), "*"]
    scoped = [permission for permission in vocabulary if accepted(f"api.api_0.{permission}")]
    return {
        "type": "string",
        "anyOf": [
            {"enum": vocabulary},
            {"pattern": f"^api\\.api_[0-9A-Za-z]{{1,40}}\\.(?:{'|'.join(re.escape(p) for p in scoped)})$"},
        ],
        "description": "A root-key permission such as `keys.write`, a group wildcard such as `keys.*`, `*`, or "
        "one scoped to an API: `api.<api_id>.<permission>` (for `apis`, `keys` and `analytics` permissions).",
    }


def _components(raw: dict[str, Any]) -> dict[str, Any]:
    components = {_rename(name): _rename_refs(value) for name, value in sorted(raw.items())}
    for struct, rules in RULES.items():
        if struct.__name__ in components:
            components[struct.__name__].update(rules)
    if "RootKeyCreate" in components:
        components["RootKeyCreate"]["properties"]["permissions"]["items"] = root_permission_schema()
    return components


def build_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``operations``."""
    types: list[Any] = [Problem]
    for op in operations:
        types.extend(t for t in (op.body, op.response) if t is not None and t not in types)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schema = {t: _rename_refs(ref) for t, ref in zip(types, refs, strict=True)}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schema, _links(op, operations))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Keystile", "version": __version__, "description": DESCRIPTION},
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in operations)],
        "paths": paths,
        "components": {
            "schemas": _components(components),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A root key (`ks_root_…`) with the permissions each operation names.",
                }
            },
        },
    }


class Reference:
    """The document of one app's operations in the two forms the app serves: ``/openapi.json`` and the ``/docs``
    page. Each is built on its first request and then kept (an app's operations never change).

    The app hands it to its handlers (:attr:`keystile.server.runtime.Runtime.reference`): the routes that serve
    the document are among the operations it describes, so they cannot import the list of them.
    """

    __slots__ = ("_document", "_html", "_json", "operations")

    def __init__(self, operations: Sequence[Operation]) -> None:
        self.operations = tuple(operations)
        self._document: dict[str, Any] | None = None
        self._json: bytes | None = None
        self._html: str | None = None

    def document(self) -> dict[str, Any]:
        if self._document is None:
            self._document = build_document(self.operations)
        return self._document

    def json(self) -> bytes:
        """The document as ``/openapi.json`` serves it."""
        if self._json is None:
            self._json = msgspec.json.encode(self.document())
        return self._json

    def html(self) -> str:
        """The document rendered as the ``/docs`` page."""
        if self._html is None:
            self._html = render(self.document())
        return self._html
