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


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/apis/"), ("POST", "/v1/keys/verify/"), ("GET", "/healthz/"), ("POST", "/v1/tokens/")],
)
async def test_a_slash_too_many_is_a_route_not_found_not_a_redirect_to_the_host_header(
    client: httpx.AsyncClient, auth: Headers, method: str, path: str
) -> None:
    # A redirect built from the Host header would send the request (a POST body holding a key, say) elsewhere.
    response = await client.request(method, path, headers={**auth, "Host": "evil.example"}, json={"key": "k"})

    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "route_not_found"


@pytest.mark.parametrize("root", ["/dashboard", "/portal"])
async def test_the_pages_roots_redirect_to_their_slash_naming_no_host(client: httpx.AsyncClient, root: str) -> None:
    response = await client.get(root, headers={"Host": "evil.example"})

    assert (response.status_code, response.headers["location"]) == (307, f"{root}/")
