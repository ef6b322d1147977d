"""The client has a method for every route of the server, with the server's parameters and types: a route added
without a client method fails here, and so does a method that sends another verb, path, query, body or body type
than its route (shown on broken declarations: mutated copies of the route table, and methods written wrong)."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import typing
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import msgspec
import pytest

import keystile
from keystile import AsyncClient, Client
from keystile.client._call import Operation as ClientOperation
from keystile.client._call import Parts, operation
from keystile.client._operations import NOT_FOR_CLIENTS, operations
from keystile.operations import (
    CREATE_API,
    CREATE_KEY,
    DELETE_KEY,
    DELETE_ROLE,
    GET_KEY,
    LIST_APIS,
    LIST_KEYS,
    LIST_LOGS,
    REVOKE_KEY,
    ROUTES,
    UPDATE_KEY,
    Param,
    Route,
)
from keystile.schemas import ApiOut, ApiPatch, KeyCreate, RerollSpec
from keystile.server.routes import OPERATIONS
from keystile.server.routing import Operation as ServerOperation

CLIENT = operations()
SERVER = {(op.method, op.path): op for op in OPERATIONS}


def _server(name: str) -> ServerOperation:
    op = CLIENT[name]
    return SERVER[(op.method, op.path)]


def test_every_route_of_the_server_has_a_client_method_and_every_method_a_route() -> None:
    routes = {(op.method, op.path) for op in CLIENT.values()}

    assert set(SERVER) - routes - set(NOT_FOR_CLIENTS) == set(), "routes without a client method"
    assert set(NOT_FOR_CLIENTS) <= set(SERVER) - routes, "an exempted route is a route without a client method"
    assert routes - set(SERVER) == set(), "client methods without a route"
    assert len(routes) == len(CLIENT)


def test_methods_are_named_by_the_operation_ids_of_the_server() -> None:
    assert {name: _server(name).operation_id for name in CLIENT} == {name: name for name in CLIENT}


@pytest.mark.parametrize("name", sorted(CLIENT))
def test_a_method_takes_the_query_parameters_path_parameters_and_body_of_its_route(name: str) -> None:
    op, route = CLIENT[name], _server(name)
    parameters = inspect.signature(op.build).parameters.values()
    keywords = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    path_names = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]

    assert keywords == {param.name for param in route.query}
    assert positional[: len(path_names)] == path_names
    assert op.body is route.body
    keys = [route.route.key_param] if route.route.key_param is not None else []
    assert positional[len(path_names) : len(path_names) + len(keys)] == keys
    assert len(positional) == len(path_names) + len(keys) + (route.body is not None)


@pytest.mark.parametrize("name", sorted(name for name in CLIENT if _server(name).response not in (None, str, dict)))
def test_a_method_answers_the_response_type_of_its_route(name: str) -> None:
    assert CLIENT[name].response == _server(name).response


def test_both_clients_have_every_method_and_the_package_exports_them() -> None:
    for name in CLIENT:
        assert callable(getattr(Client("http://unused"), name))
        assert name in dir(AsyncClient)
    assert keystile.Client is Client
    assert keystile.AsyncClient is AsyncClient
    assert keystile.__all__ == sorted(keystile.__all__)
    assert {"AsyncClient", "Client"} <= set(keystile.__all__)


def test_importing_keystile_does_not_import_httpx_until_a_client_is_used() -> None:
    code = (
        "import sys, keystile; before = 'httpx' in sys.modules; keystile.Client; print(before, 'httpx' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


# -- what a method sends, against its route ---------------------------------------------------------------------

_SAMPLES: dict[str, Any] = {
    "string": "text-1",
    "integer": 7,
    "boolean": False,
    "date-time": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
}
_SENT = {"string": "text-1", "integer": "7", "boolean": "false", "date-time": "2025-01-02T03:04:05+00:00"}
_BODY = {"sample": "body"}


def disagreements(method: ClientOperation[Any, Any], route: Route[Any]) -> list[str]:
    """How ``method`` departs from ``route``, one line per disagreement (none when the two agree): its
    parameters against the route's path, body and query, then the request it builds when called."""
    params = inspect.signature(method.build).parameters.values()
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    path_names = route.path_params
    found = []
    if positional[: len(path_names)] != path_names:
        found.append(
            f"path parameters: the method takes {positional[: len(path_names)]}, {route.path} has {path_names}"
        )
    keys = [route.key_param] if route.key_param is not None else []
    if positional[len(path_names) : len(path_names) + len(keys)] != keys:
        found.append(f"key: the method takes {positional[len(path_names) :]}, the route's key is {keys}")
    bodies = positional[len(path_names) + len(keys) :]
    if len(bodies) != (route.body is not None):
        found.append(f"body: the method takes {bodies}, the route's body is {route.body}")
    elif bodies and typing.get_type_hints(method.build)[bodies[0]] not in (route.body, route.body | None):
        hint = typing.get_type_hints(method.build)[bodies[0]]
        found.append(f"body type: the method takes {hint}, the route {route.body}")
    if keywords != {param.name for param in route.query}:
        found.append(
            f"query parameters: the method takes {sorted(keywords)}, the route {sorted(p.name for p in route.query)}"
        )
    if method.response != route.response:
        found.append(f"response: the method decodes {method.response}, the route answers {route.response}")
    if found:
        return found  # the call below would only repeat them

    # Each path parameter, and each query parameter alone, gets a value of its own: a swap or a typo shows.
    args: list[Any] = [f"{name}-1" for name in path_names] + ["key-1"] * len(keys)
    args += [_BODY] if route.body is not None else []
    expected_path = route.path.format_map({name: quote(f"{name}-1", safe="") for name in path_names})
    for param in (None, *route.query):
        kwargs = {} if param is None else {param.name: _SAMPLES[param.kind]}
        call = method.build(*args, **kwargs)
        if call.method != route.method:
            found.append(f"verb: the method sends {call.method}, the route is {route.method} {route.path}")
        if call.path != expected_path:
            found.append(f"path: the method sends {call.path}, the route is {route.path}")
        expected_query = {} if param is None else {param.name: _SENT[param.kind]}
        if call.params != expected_query:
            found.append(f"query: given {kwargs}, the method sends {call.params}")
        if route.body is None and call.content is not None:
            found.append(f"body: the method sends {call.content!r} to {route.path}, which takes none")
        if route.body is not None and call.content != msgspec.json.encode(_BODY):
            found.append(f"body: the method sends {call.content!r}, not the body it is given")
        if keys and dict(call.extra_headers or {}) != {"authorization": "Bearer key-1"}:
            found.append(f"key: the method sends {call.extra_headers}, not the key as a Bearer credential")
        if route.body is not None and call.content_type not in route.body_types:
            found.append(f"body media type: the method sends {call.content_type}, the route takes {route.body_types}")
    return sorted(set(found))


def test_every_route_is_called_by_its_method_as_declared() -> None:
    routes = {route.name: route for route in ROUTES}

    assert {name: disagreements(method, routes[name]) for name, method in CLIENT.items()} == {
        name: [] for name in CLIENT
    }
    assert all(CLIENT[name].route is routes[name] for name in CLIENT)


def _changed(route: Route[Any], **changes: Any) -> Route[Any]:
    return dataclasses.replace(route, **changes)


def _renamed(params: tuple[Param, ...], old: str, new: str) -> tuple[Param, ...]:
    return tuple(dataclasses.replace(p, name=new) if p.name == old else p for p in params)


# Routes changed without their methods: what the client would send if it declared the route on its own.
MUTATIONS: dict[str, tuple[str, Route[Any], str]] = {
    "path renamed": ("get_key", _changed(GET_KEY, path="/v1/key/{key_id}"), "path:"),
    "path parameter renamed": ("get_key", _changed(GET_KEY, path="/v1/keys/{id}"), "path parameters:"),
    "verb changed": ("delete_key", _changed(DELETE_KEY, method="POST"), "verb:"),
    "body type changed": ("update_key", _changed(UPDATE_KEY, body=ApiPatch), "body type:"),
    "body added": ("revoke_key", _changed(REVOKE_KEY, body=RerollSpec), "body:"),
    "body removed": ("create_api", _changed(CREATE_API, body=None), "body:"),
    "merge patch refused": (
        "update_key",
        _changed(UPDATE_KEY, body_types=("application/json",)),
        "body media type:",
    ),
    "query parameter removed": (
        "list_keys",
        _changed(LIST_KEYS, query=LIST_KEYS.query[1:]),
        "query parameters:",
    ),
    "query parameter renamed": (
        "list_logs",
        _changed(LIST_LOGS, query=_renamed(LIST_LOGS.query, "outcome", "code")),
        "query parameters:",
    ),
    "response changed": ("get_key", _changed(GET_KEY, response=ApiOut), "response:"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_route_changed_without_its_method_is_a_disagreement(mutation: str) -> None:
    name, route, expected = MUTATIONS[mutation]

    found = disagreements(CLIENT[name], route)

    assert [line for line in found if line.startswith(expected)], found


@operation(LIST_APIS)
def _swapped_query(*, cursor: str | None = None, limit: int | None = None) -> Parts:
    return Parts(query={"cursor": limit, "limit": cursor})


@operation(DELETE_ROLE)
def _swapped_path(api_id: str, name: str) -> Parts:
    return Parts({"api_id": name, "name": api_id})


@operation(CREATE_KEY)
def _body_dropped(api_id: str, spec: KeyCreate | None = None) -> Parts:
    return Parts({"api_id": api_id})


@operation(UPDATE_KEY)
def _wrong_body_type(key_id: str, patch: ApiPatch) -> Parts:
    return Parts({"key_id": key_id}, body=patch)


@operation(LIST_APIS)
def _query_misnamed(*, cursor: str | None = None, limit: int | None = None) -> Parts:
    return Parts(query={"after": cursor, "limit": limit})


@operation(LIST_KEYS)
def _query_missing(api_id: str, *, owner_id: str | None = None) -> Parts:
    return Parts({"api_id": api_id}, {"owner_id": owner_id})


# Methods written wrong against the right route: their signature or their Parts do not match it.
BROKEN: dict[str, tuple[ClientOperation[Any, Any], Route[Any], str]] = {
    "query values swapped": (_swapped_query, LIST_APIS, "query:"),
    "path values swapped": (_swapped_path, DELETE_ROLE, "path:"),
    "body dropped": (_body_dropped, CREATE_KEY, "body:"),
    "body of another type": (_wrong_body_type, UPDATE_KEY, "body type:"),
    "query parameter misnamed": (_query_misnamed, LIST_APIS, "query:"),
    "query parameters missing": (_query_missing, LIST_KEYS, "query parameters:"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_method_written_against_its_route_is_a_disagreement(broken: str) -> None:
    method, route, expected = BROKEN[broken]

    found = disagreements(method, route)

    assert [line for line in found if line.startswith(expected)], found


def test_importing_the_client_imports_neither_the_server_nor_its_framework() -> None:
    code = "import sys, keystile.client; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = done.stdout.split()
    heavy = ("starlette", "granian", "cryptography", "keystile.server", "keystile.service", "keystile.storage")

    assert "keystile.operations" in modules
    assert [m for m in modules if any(m == h or m.startswith(f"{h}.") for h in heavy)] == []
