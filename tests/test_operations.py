"""The route table shared by the server and the client: every route declared once, under its own name."""

from __future__ import annotations

from keystile import operations
from keystile.operations import MERGE_PATCH, ROUTES, NoContent, Route


def test_every_route_declared_is_in_the_table_under_its_own_name() -> None:
    declared = {name: value for name, value in vars(operations).items() if isinstance(value, Route)}

    assert {name: route.name.upper() for name, route in declared.items()} == {name: name for name in declared}
    assert sorted(route.name for route in ROUTES) == sorted(route.name for route in declared.values())
    assert len(ROUTES) == len(declared)


def test_no_two_routes_share_a_name_or_a_method_and_path() -> None:
    assert len({route.name for route in ROUTES}) == len(ROUTES)
    assert len({(route.method, route.path) for route in ROUTES}) == len(ROUTES)


def test_bodies_go_where_http_carries_them() -> None:
    assert [route.name for route in ROUTES if route.status == 204 and route.response is not NoContent] == []
    assert [route.name for route in ROUTES if route.method in ("GET", "DELETE") and route.body is not None] == []
    assert [route.name for route in ROUTES if MERGE_PATCH in route.body_types and route.method != "PATCH"] == []
