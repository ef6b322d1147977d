"""The client has a method for every route of the server, with the server's parameters and types: a route added
without a client method fails here."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import keystile
from keystile import AsyncClient, Client
from keystile.client._operations import NOT_FOR_CLIENTS, operations
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
    assert len(positional) == len(path_names) + (route.body is not None)


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
