"""The dashboard's sessions and the portal's links are shared by every process of a deployment (SPEC X3, D1, D2):
a link made through one server signs in through another, once, and a session begun on one is known to the other
and ends on both at sign-out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .server import Server, serve

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def pair(tmp_path: Path, fresh_pg_url: str) -> Iterator[tuple[Server, Server]]:
    env = {"KEYSTILE_DATABASE_URL": fresh_pg_url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = serve(tmp_path / "a", {**env, "KEYSTILE_DATA_DIR": str(tmp_path / "a" / "data")}, name="a")
    try:
        second = serve(tmp_path / "b", {**env, "KEYSTILE_DATA_DIR": str(tmp_path / "b" / "data")}, name="b")
    except BaseException:
        first.stop()
        raise
    yield first, second
    for server in (first, second):
        assert server.stop() == 0, server.output()


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found[1]


def test_a_portal_link_and_a_dashboard_session_work_across_servers(pair: tuple[Server, Server]) -> None:
    a, b = pair
    root = {"Authorization": f"Bearer {a.root_key()}"}
    api_id = httpx.post(f"{a.url}/v1/apis", json={"name": "shared"}, headers=root).json()["id"]
    url = httpx.post(f"{a.url}/v1/portal/sessions", json={"api_id": api_id, "owner_id": "alice"}, headers=root)
    token = url.json()["url"].split("token=")[1]

    with httpx.Client(base_url=b.url) as browser:
        assert browser.get(f"/portal/sign-in?token={token}").status_code == 200
        signed_in = browser.post("/portal/sign-in", data={"token": token})
        assert signed_in.status_code == 303
        assert browser.get("/portal/").status_code == 200
    with httpx.Client(base_url=a.url) as other:
        assert other.get(f"/portal/sign-in?token={token}").status_code == 401  # used, on the other server too
        assert other.post("/portal/sign-in", data={"token": token}).status_code == 401
        other.cookies.set("keystile_portal", signed_in.cookies["keystile_portal"], path="/portal")
        assert other.get("/portal/").status_code == 200

    with httpx.Client(base_url=a.url) as on_a, httpx.Client(base_url=b.url) as on_b:
        form = on_a.get("/dashboard/sign-in")
        answer = on_a.post("/dashboard/sign-in", data={"csrf": _csrf(form), "root_key": a.root_key()})
        assert answer.status_code == 303
        session = answer.cookies["keystile_session"]
        on_b.cookies.set("keystile_session", session, path="/dashboard")
        page = on_b.get("/dashboard/apis")
        assert page.status_code == 200
        assert "shared" in page.text
        assert on_b.post("/dashboard/sign-out", data={"csrf": _csrf(page)}).status_code == 303
        on_a.cookies.set("keystile_session", session, path="/dashboard")
        assert on_a.get("/dashboard/apis").headers["location"] == "/dashboard/sign-in"
