"""``/openapi.json`` and ``/docs``: generated from the routes, so every route is documented and vice versa."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema_rs
import pytest
from starlette.routing import Route

from keystile.http.asgi import ASGIApp
from keystile.server import KeystileApp
from keystile.server.app import PageRoot

from .helpers import Headers, bearer, problem

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
    "/v1/tokens": "the caller presents its own key, not a root key (SPEC T1)",
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
        if isinstance(route, Route) and not isinstance(route, PageRoot)  # a redirect to the pages, not the API
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


OAUTH_ERRORS = {("/oauth/token", "400"), ("/oauth/token", "401"), ("/oauth/introspect", "400")}
"""Answers that are RFC 6749 errors (``{error, error_description}``), as OAuth 2.0 clients expect, not problems."""


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
                if (path, status) in OAUTH_ERRORS:
                    assert set(answer["content"]) == {"application/json"}
                elif path != "/v1/auth" and (status == "default" or status.startswith("4")):
                    schema = answer["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}
            if (path.startswith("/v1/") and path not in PUBLIC) or path == "/oauth/introspect":
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


def _admits(document: Json, schema: Json, value: Any) -> bool:
    """Whether ``value`` is valid against ``schema`` (a schema of ``document``, refs resolved, formats checked)."""
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "components": document["components"]}
    return jsonschema_rs.is_valid(root, value, validate_formats=True)


def _body_schema(document: Json, path: str, method: str) -> Json:
    schema: Json = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return schema


def _query_schema(document: Json, path: str, name: str) -> Json:
    [param] = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    schema: Json = param["schema"]
    return schema


# Bodies the server refuses with a 400 for a rule the document did not state (schemathesis found each of them
# as a "schema-valid request rejected"); the document must now refuse them too.
REFUSED_BODIES = [
    pytest.param("/v1/apis/{api_id}/keys", {"permissions": ["°"]}, "invalid_permission", id="key-permission"),
    pytest.param("/v1/apis/{api_id}/keys", {"permissions": ["a" * 129]}, "invalid_request", id="long-permission"),
    pytest.param("/v1/apis/{api_id}/keys", {"ip_allowlist": ["10.0.0.0/33"]}, "invalid_cidr", id="cidr"),
    pytest.param("/v1/apis/{api_id}/keys", {"name": "a\x00b"}, "invalid_character", id="nul"),
    pytest.param("/v1/apis/{api_id}/roles", {"name": "r", "permissions": ["(p>"]}, "invalid_permission", id="role"),
    pytest.param("/v1/root-keys", {"permissions": ["0"]}, "invalid_permission", id="root-permission"),
    pytest.param(
        "/v1/root-keys", {"permissions": ["api.api_0.audit.read"]}, "invalid_permission", id="root-scoped-audit"
    ),
    pytest.param("/v1/apis", {"name": "a", "prefix": "ks_root"}, "invalid_prefix", id="reserved-prefix"),
    pytest.param(
        "/v1/apis", {"name": "a", "expire_stale_after_days": 5}, "invalid_rotation_policy", id="rotation-policy"
    ),
    pytest.param(
        "/v1/identities",
        {"owner_id": "o", "credits": {"remaining": 1, "refill": {"amount": 1, "interval": "daily", "day": 3}}},
        "invalid_refill",
        id="daily-refill-day",
    ),
    pytest.param("/v1/keys/verify", {"key": "k", "ip": "0" * 40}, "invalid_ip", id="verify-ip"),
    pytest.param("/v1/keys/{key_id}/credits", {"op": "add", "amount": None}, "invalid_request", id="add-null"),
]


@pytest.mark.parametrize(("path", "body", "code"), REFUSED_BODIES)
async def test_the_document_refuses_the_bodies_the_server_refuses(
    client: httpx.AsyncClient, auth: Headers, key: Json, path: str, body: Json, code: str
) -> None:
    document = await _document(client)
    url = path.format(api_id=key["api_id"], key_id=key["id"])

    problem(await client.post(url, json=body, headers=auth), 400, code)
    assert not _admits(document, _body_schema(document, path, "post"), body)


ACCEPTED_BODIES = [
    pytest.param("/v1/apis/{api_id}/keys", {"permissions": ["docs.read", "docs.*", "*", "a:b-c_d"]}, id="grants"),
    pytest.param("/v1/apis/{api_id}/keys", {"ip_allowlist": ["10.0.0.0/8", "2001:db8::/32", "::1"]}, id="cidrs"),
    pytest.param("/v1/root-keys", {"permissions": ["keys.write", "audit.*", "api.{api_id}.keys.*"]}, id="root"),
    pytest.param("/v1/apis", {"name": "a", "max_key_age_days": 9, "expire_stale_after_days": 5}, id="rotation"),
    pytest.param("/v1/apis", {"name": "a", "recoverable": False}, id="not-recoverable"),
    pytest.param("/v1/apis", {"name": "a", "recoverable": True}, id="recoverable"),
    pytest.param(
        "/v1/identities",
        {"owner_id": "o", "credits": {"remaining": 1, "refill": {"amount": 1, "interval": "monthly", "day": 3}}},
        id="monthly-refill",
    ),
    pytest.param("/v1/keys/{key_id}/credits", {"op": "set", "amount": None}, id="set-null"),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED_BODIES)
async def test_the_document_admits_the_bodies_the_server_accepts(
    client: httpx.AsyncClient, auth: Headers, key: Json, path: str, body: Json
) -> None:
    document = await _document(client)
    body = json.loads(json.dumps(body).replace("{api_id}", key["api_id"]))

    answer = await client.post(path.format(api_id=key["api_id"], key_id=key["id"]), json=body, headers=auth)
    assert answer.status_code in (200, 201), answer.text
    assert _admits(document, _body_schema(document, path, "post"), body)


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/v1/logs", "outcome", "nope"),
        ("/v1/logs", "cursor", "abc"),
        ("/v1/logs", "api_id", ""),
        ("/v1/analytics/verifications", "granularity", "week"),
        ("/v1/audit", "cursor", "²"),
        ("/v1/apis", "limit", 0),
    ],
)
async def test_the_document_refuses_the_query_values_the_server_refuses(
    client: httpx.AsyncClient, auth: Headers, path: str, name: str, value: Any
) -> None:
    document = await _document(client)

    answer = await client.get(path, params={name: value}, headers=auth)
    assert answer.status_code == 400, answer.text
    assert not _admits(document, _query_schema(document, path, name), value)


async def test_forward_auth_cost_is_documented_as_it_is_checked(client: httpx.AsyncClient) -> None:
    document = await _document(client)

    assert _query_schema(document, "/v1/auth", "cost") == {"type": "integer", "minimum": 0, "maximum": 10**9}


async def test_a_whole_number_written_with_a_fraction_is_refused_as_the_document_says(
    client: httpx.AsyncClient, auth: Headers, key: Json
) -> None:
    document = await _document(client)
    response = await client.post(f"/v1/keys/{key['id']}/reroll", json={"grace_period_ms": 1905.0}, headers=auth)

    assert problem(response, 400, "invalid_request")["field"] == "/grace_period_ms"
    assert "never `5.0`" in document["info"]["description"]


async def test_forward_auth_documents_empty_answers_and_the_headers_it_sends(
    client: httpx.AsyncClient, key: Json
) -> None:
    document = await _document(client)
    responses = document["paths"]["/v1/auth"]["get"]["responses"]
    query = {"api_id": key["api_id"]}

    valid = await client.get("/v1/auth", params=query, headers=bearer(key["key"]))
    missing = await client.get("/v1/auth", params=query)
    bad_option = await client.get("/v1/auth", params={**query, "nope": "1"}, headers=bearer(key["key"]))

    assert all("content" not in answer for answer in responses.values())
    assert "default" not in responses
    for answer, status in ((valid, 200), (missing, 401), (bad_option, 400)):
        assert answer.status_code == status
        assert answer.content == b""
        assert "content-type" not in answer.headers
        for name, header in responses[str(status)]["headers"].items():
            if header["required"]:
                assert name.lower() in answer.headers, (status, name)


async def test_creating_operations_link_to_what_the_created_object_enables(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    paths = document["paths"]

    key_links = paths["/v1/apis/{api_id}/keys"]["post"]["responses"]["201"]["links"]
    assert key_links["revoke_key"] == {"operationId": "revoke_key", "parameters": {"key_id": "$response.body#/id"}}
    assert {"get_key", "update_key", "reroll_key", "change_credits", "delete_key"} <= set(key_links)
    assert set(paths["/v1/apis"]["post"]["responses"]["201"]["links"]) >= {"create_key", "put_role", "get_api"}
    assert set(paths["/v1/root-keys"]["post"]["responses"]["201"]["links"]) == {"revoke_root_key"}
    operation_ids = {op["operationId"] for item in paths.values() for op in item.values()}
    for item in paths.values():
        for operation in item.values():
            for answer in operation["responses"].values():
                for link in answer.get("links", {}).values():
                    assert link["operationId"] in operation_ids
