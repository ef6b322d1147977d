"""The server serves the route table of :mod:`keystile.operations` (the one the client calls): every route once,
each reaching its handler, and no route of its own."""

from __future__ import annotations

import httpx
import pytest

from keystile.operations import ROUTES, Route
from keystile.server.routes import OPERATIONS

from .helpers import Headers


def test_the_server_serves_every_route_of_the_table_once_and_no_other() -> None:
    served = [op.route for op in OPERATIONS]

    assert [route.name for route in ROUTES if route not in served] == [], "routes the server does not serve"
    assert [route.name for route in served if served.count(route) > 1] == [], "routes served twice"
    assert [route.name for route in served if route not in ROUTES] == [], "routes of the server's own"


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.name)
async def test_every_route_of_the_table_reaches_its_handler(
    client: httpx.AsyncClient, auth: Headers, route: Route[object]
) -> None:
    path = route.path.format_map(dict.fromkeys(route.path_params, "x"))

    response = await client.request(route.method, path, headers=auth)

    # Whatever the handler makes of an empty request (a 400, a 404 for object "x", a 200), the router found it.
    assert response.status_code != 405
    if response.headers.get("content-type") == "application/problem+json":
        assert response.json()["code"] not in ("route_not_found", "method_not_allowed")
