"""The customer portal in a real browser (SPEC D2): a provider hands its customer a one-time link, and the
customer manages their own keys, and only theirs."""

from __future__ import annotations

import re
import time

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import api, assert_nowhere, check_page, csrf_of
from tests.browser.test_dashboard import copied_key
from tests.e2e.server import Server


def portal_link(server: Server, root_key: str, api_id: str, owner: str, **more: object) -> str:
    answer = api(server, root_key, "POST", "/v1/portal/sessions", {"api_id": api_id, "owner_id": owner, **more})
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    url: str = answer.json()["url"]
    assert url.startswith(f"{server.url}/portal/sign-in?token=")
    return url


def test_a_customer_signs_in_by_link_and_manages_only_their_own_keys(
    page: Page, context: BrowserContext, server: Server, root_key: str
) -> None:
    api_id = api(server, root_key, "POST", "/v1/apis", {"name": "Forecasts"}).json()["id"]
    other_api = api(server, root_key, "POST", "/v1/apis", {"name": "Other"}).json()["id"]
    bob = api(server, root_key, "POST", f"/v1/apis/{api_id}/keys", {"name": "bob's", "owner_id": "bob"}).json()
    elsewhere = api(server, root_key, "POST", f"/v1/apis/{other_api}/keys", {"owner_id": "alice"}).json()
    policy = {"max_keys": 2, "permissions": ["forecast.read", "forecast.write"], "max_expires_days": 30}
    link = portal_link(server, root_key, api_id, "alice", policy=policy, return_url="https://weather.example/account")

    page.goto(link)
    check_page(page, "portal sign-in")
    page.get_by_role("button", name="Continue to your keys").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))
    expect(page.get_by_role("heading", name="Your API keys")).to_be_visible()
    expect(page.get_by_text("You have no keys yet.")).to_be_visible()
    [cookie] = [c for c in context.cookies() if c["name"] == "keystile_portal"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert "ks_" not in cookie["value"]
    check_page(page, "portal keys empty")

    # Create a key within the policy: shown once, with a copy button.
    page.get_by_label("Name").fill("alice prod")
    page.get_by_label("forecast.write").uncheck()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create key").click()
    assert answer.value.headers["cache-control"] == "no-store"
    check_page(page, "portal key created")
    key = copied_key(page)
    verified = api(server, root_key, "POST", "/v1/keys/verify", {"key": key, "permissions": "forecast.read"}).json()
    assert verified["code"] == "VALID"
    assert verified["owner_id"] == "alice"
    assert verified["permissions"] == ["forecast.read"]
    assert verified["expires_at"] is not None  # the policy's longest expiry applies
    key_id = verified["key_id"]

    # Its page: usage chart and last use.
    page.get_by_role("link", name="Go to the key").click()
    valid = page.locator(".count[data-outcome=VALID]")
    deadline = time.monotonic() + 15
    while valid.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(valid).to_have_text("1")
    expect(page.locator(".facts")).not_to_contain_text("Last usednever")
    check_page(page, "portal key detail")

    # Rename, then roll with a grace period: both keys work during it.
    page.get_by_label("Name", exact=True).fill("alice production")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", name="alice production")).to_be_visible()
    page.get_by_label("Keep the old key working for").select_option(label="1 hour")
    page.get_by_role("button", name="Roll key").click()
    expect(page.get_by_role("heading", name="Key rolled")).to_be_visible()
    check_page(page, "portal key rolled")
    rolled = copied_key(page)
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": rolled}).json()["code"] == "VALID"
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": key}).json()["code"] == "VALID"

    # The policy's max_keys: the rolled-away key does not count, so one more may be made, then no more.
    page.get_by_role("link", name="All your keys").click()
    page.get_by_label("Name").fill("second")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("link", name="All your keys").click()
    expect(page.get_by_text("You hold the most keys you may (2)")).to_be_visible()

    # Revoke the rolled key.
    page.get_by_role("link", name="alice production").first.click()
    if page.get_by_role("button", name="Roll key").count() == 0:  # the old key: go to the new one
        page.goto(f"/portal/keys/{api(server, root_key, 'GET', f'/v1/keys/{key_id}').json()['rotated_to']}")
    page.get_by_role("button", name="Revoke key").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": rolled}).json()["code"] == "REVOKED"

    # Nothing of another owner, or of another API, is reachable by guessing its URL: 404, as for no key at all.
    for other in (bob["id"], elsewhere["id"], "key_0000000000000000000000", "nonsense"):
        shown = page.goto(f"/portal/keys/{other}")
        assert shown is not None
        assert shown.status == 404, other
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    check_page(page, "portal not found")
    page.goto("/portal/")
    token = csrf_of(page)
    for action in ("revoke", "roll", "rename"):
        refused = page.request.post(f"/portal/keys/{bob['id']}/{action}", form={"csrf": token, "grace_ms": "0"})
        assert refused.status == 404, action
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": bob["key"]}).json()["code"] == "VALID"
    # Forms without the session's CSRF token are refused.
    for form in ({}, {"csrf": "forged"}):
        assert page.request.post("/portal/keys", form={**form, "name": "x"}).status == 403
        assert page.request.post(f"/portal/keys/{key_id}/rename", form={**form, "name": "x"}).status == 403
    # Permissions beyond the policy are refused even when posted by hand.
    beyond = page.request.post("/portal/keys", form={"csrf": token, "permission": "admin"})
    assert beyond.status == 403

    # The link was used: it is refused, and so is an expired one (when opened, and when its form is posted).
    page.goto(link)
    expect(page.get_by_role("heading", name="Not signed in")).to_be_visible()
    check_page(page, "portal link refused")
    used = httpx.post(f"{server.url}/portal/sign-in", data={"token": link.split("token=")[1]})
    assert used.status_code == 401
    short = portal_link(server, root_key, api_id, "carol", ttl_s=1)
    assert httpx.get(short).status_code == 200  # opening it does not use it up (link previews, mail scanners)
    assert httpx.get(short).status_code == 200
    time.sleep(1.2)
    assert httpx.get(short, follow_redirects=False).status_code == 401
    expired = httpx.post(f"{server.url}/portal/sign-in", data={"token": short.split("token=")[1]})
    assert expired.status_code == 401

    # Audit entries name the customer.
    audit = api(server, root_key, "GET", "/v1/audit?actor=portal:alice").json()["items"]
    assert {"key.create", "key.update", "key.reroll", "key.revoke"} <= {entry["action"] for entry in audit}

    # Sign out: the session ends on the server too.
    page.goto("/portal/")
    session = {c["name"]: c["value"] for c in context.cookies()}["keystile_portal"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    check_page(page, "portal signed out")
    assert httpx.get(f"{server.url}/portal/", cookies={"keystile_portal": session}).status_code == 401
    assert_nowhere(server, key, rolled, link.split("token=")[1], session)


def test_the_portal_session_route_checks_the_root_key(server: Server, root_key: str) -> None:
    api_id = api(server, root_key, "POST", "/v1/apis", {"name": "Scoped"}).json()["id"]
    reader = api(server, root_key, "POST", "/v1/root-keys", {"permissions": ["keys.read"]}).json()["key"]
    other = api(server, root_key, "POST", "/v1/apis", {"name": "Elsewhere"}).json()["id"]
    scoped = api(server, root_key, "POST", "/v1/root-keys", {"permissions": [f"api.{other}.keys.write"]}).json()["key"]
    body = {"api_id": api_id, "owner_id": "alice"}
    assert api(server, reader, "POST", "/v1/portal/sessions", body).status_code == 403
    assert api(server, scoped, "POST", "/v1/portal/sessions", body).status_code == 404
    assert api(server, scoped, "POST", "/v1/portal/sessions", {**body, "api_id": other}).status_code == 201
    answer = httpx.post(f"{server.url}/v1/portal/sessions", json=body)
    assert answer.status_code == 401
