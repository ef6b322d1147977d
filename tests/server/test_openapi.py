"""``/openapi.json`` and ``/docs``: generated from the routes, so every route is documented and vice versa."""

from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.routing import Route

from keystile.server import KeystileApp
from keystile.server.http import ASGIApp

Json = dict[str, Any]
METHODS = {"get", "post", "put", "patch", "delete"}


async def _document(client: httpx.AsyncClient) -> Json:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document: Json = response.json()
    return document


PUBLIC = {
    "/v1/leaks": "leak reports are signed by GitHub instead",
    "/v1/auth": "forward auth trusts the network (SPEC V5)",
}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


async def test_every_route_is_documented_and_every_documented_route_exists(
    client: httpx.AsyncClient, app: ASGIApp
) -> None:
    assert isinstance(app, KeystileApp)
    served = {
        (route.path, method.lower())
        for route in app.starlette.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    document = await _document(client)
    documented = {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}

    assert served == documented
    assert ("/v1/keys/verify", "post") in documented


async def test_the_document_is_openapi_3_1_with_resolvable_schemas(client: httpx.AsyncClient) -> None:
    document = await _document(client)

    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    assert {"KeyCreate", "KeyCreated", "KeyOutPage", "VerifyRequest", "VerifyResponse", "Problem"} <= set(schemas)


async def test_operations_declare_parameters_bodies_answers_and_security(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    operation_ids = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operation_ids.add(operation["operationId"])
            assert operation["summary"]
            path_params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert path_params == set(re.findall(r"\{(\w+)\}", path)), (method, path)
            for status, answer in operation["responses"].items():
                if path != "/v1/auth" and (status == "default" or status.startswith("4")):
                    schema = answer["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}
            if path.startswith("/v1/") and path not in PUBLIC:
                assert operation["security"] == [{"rootKey": []}]
                assert "401" in operation["responses"]
            else:
                assert operation["security"] == []
    assert len(operation_ids) == sum(len(item) for item in document["paths"].values())
    assert document["components"]["securitySchemes"]["rootKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["rootKey"]["description"],
    }


async def test_the_key_list_documents_its_filters(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    operation = document["paths"]["/v1/apis/{api_id}/keys"]["get"]

    params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(params) == {"owner_id", "enabled", "expired", "revoked", "stale", "q", "cursor", "limit"}
    assert params["enabled"]["schema"] == {"type": "boolean"}


async def test_merge_patch_routes_accept_both_media_types(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    body = document["paths"]["/v1/keys/{key_id}"]["patch"]["requestBody"]

    assert set(body["content"]) == {"application/json", "application/merge-patch+json"}
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/KeyPatch"}


async def test_docs_is_a_self_contained_page_of_every_operation(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    response = await client.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?https?://""", page)
    for path, item in document["paths"].items():
        assert path in page
        for operation in item.values():
            assert f'id="op-{operation["operationId"]}"' in page
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    assert "owner_id" in page


async def test_limits_identities_and_rotation_routes_are_documented(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    paths = document["paths"]

    assert set(paths["/v1/identities/{owner_id}"]) == {"get", "patch", "delete"}
    assert paths["/v1/identities"]["post"]["responses"]["409"]
    assert paths["/v1/keys/{key_id}/reroll"]["post"]["responses"]["201"]
    assert paths["/v1/keys/{key_id}/credits"]["post"]["requestBody"]
    assert paths["/v1/ratelimit"]["post"]["security"] == [{"rootKey": []}]
    assert "stale" in document["components"]["schemas"]["KeyOut"]["required"]
