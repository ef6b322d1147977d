"""The admin dashboard in a real browser (SPEC D1, S5): what an administrator does with it, end to end."""

from __future__ import annotations

import re
import time

import httpx
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import api, assert_nowhere, check_page, csrf_of
from tests.e2e.server import Server
from tests.webhook_receiver import receiver


def sign_in(page: Page, root_key: str) -> None:
    page.goto("/dashboard/")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
    page.get_by_label("Root key").fill(root_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="APIs", exact=True)).to_be_visible()


def nav(page: Page, label: str) -> Locator:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True)


def copied_key(page: Page) -> str:
    """Click the copy button and read what it put on the clipboard."""
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    text: str = page.evaluate("() => navigator.clipboard.readText()")
    assert text == page.locator("#plain-key").input_value()
    return text


def test_sign_in_create_copy_verify_chart_logs_reroll_revoke_audit_sign_out(
    page: Page, context: BrowserContext, server: Server, root_key: str
) -> None:
    page.goto("/dashboard/sign-in")
    check_page(page, "dashboard sign-in")
    sign_in(page, root_key)

    # The session cookie holds no key.
    [cookie] = [c for c in context.cookies() if c["name"] == "keystile_session"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert root_key not in cookie["value"]
    assert "ks_" not in cookie["value"]

    # Create an API, then a key in it.
    page.get_by_label("Name").fill("Weather")
    page.get_by_role("button", name="Create API").click()
    expect(page.get_by_role("heading", name=re.compile("^Weather"))).to_be_visible()
    api_id = page.url.rsplit("/", 1)[1]
    nav(page, "APIs").click()
    check_page(page, "dashboard apis")
    page.get_by_role("link", name="Weather").click()
    page.get_by_role("link", name="Create a key").click()
    check_page(page, "dashboard key new")
    page.get_by_label("Name").fill("alice laptop")
    page.get_by_label("Owner id").fill("alice")
    page.get_by_label("Permissions").fill("forecast.read")
    page.get_by_label("Credits").fill("100")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create key").click()
    assert answer.value.headers["cache-control"] == "no-store"
    assert "'unsafe-inline'" not in answer.value.headers["content-security-policy"]
    expect(page.get_by_role("heading", name="Key created")).to_be_visible()
    check_page(page, "dashboard key created")
    key = copied_key(page)
    assert key.startswith("ks_")

    # Verify it through the HTTP API.
    verified = api(server, root_key, "POST", "/v1/keys/verify", {"key": key, "permissions": "forecast.read"})
    assert verified.json()["code"] == "VALID"
    key_id = verified.json()["key_id"]

    # The verification shows on the key's chart (once the event writer has flushed it) and in the logs.
    page.get_by_role("link", name="Go to the key").click()
    deadline = time.monotonic() + 15
    valid = page.locator(".count[data-outcome=VALID]")
    while valid.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(valid).to_have_text("1")
    assert page.locator("svg.chart rect.o-valid").count() >= 1
    expect(page.get_by_text("99 remaining")).to_be_visible()
    check_page(page, "dashboard key detail")
    page.get_by_role("link", name="All verifications of this key").click()
    expect(page.get_by_label("Key id")).to_have_value(key_id)
    page.get_by_label("Outcome").select_option("VALID")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.events tbody tr")).to_have_count(1)
    expect(page.locator("table.events tbody tr").first).to_contain_text("VALID")
    check_page(page, "dashboard logs")
    page.get_by_label("Outcome").select_option("REVOKED")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No verifications recorded.")).to_be_visible()

    # Disable and enable, then reroll: the new key is shown once.
    page.goto(f"/dashboard/keys/{key_id}")
    page.get_by_role("button", name="Disable").click()
    expect(page.locator(".status-line")).to_contain_text("disabled")
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": key}).json()["code"] == "DISABLED"
    page.get_by_role("button", name="Enable").click()
    expect(page.locator(".status-line")).to_contain_text("active")
    page.get_by_label("Grace period (hours)").fill("0")
    page.get_by_role("button", name="Reroll").click()
    expect(page.get_by_role("heading", name="Key rerolled")).to_be_visible()
    new_key = copied_key(page)
    assert new_key != key
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": new_key}).json()["code"] == "VALID"
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": key}).json()["code"] == "EXPIRED"

    # Revoke the new key.
    page.get_by_role("link", name="Go to the key").click()
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator(".status-line")).to_contain_text("revoked")
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    assert api(server, root_key, "POST", "/v1/keys/verify", {"key": new_key}).json()["code"] == "REVOKED"

    # The keys page: search and the status filter.
    page.goto(f"/dashboard/apis/{api_id}?status=revoked")
    expect(page.locator("table.keys tbody tr")).to_have_count(1)
    check_page(page, "dashboard keys")

    # The audit log holds every action, and its chain is intact.
    nav(page, "Audit log").click()
    for action in ("api.create", "key.create", "key.update", "key.reroll", "key.revoke"):
        expect(page.locator("code.action", has_text=action).first).to_be_visible()
    expect(page.locator(".chain")).to_contain_text("intact")
    check_page(page, "dashboard audit")
    nav(page, "Identities").click()
    check_page(page, "dashboard identities")
    nav(page, "Root keys").click()
    check_page(page, "dashboard root keys")

    # Signing out ends the session on the server too: the old cookie opens nothing.
    old = {c["name"]: c["value"] for c in context.cookies()}["keystile_session"]
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))
    again = httpx.get(f"{server.url}/dashboard/apis", cookies={"keystile_session": old}, follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/dashboard/sign-in"
    assert_nowhere(server, key, new_key, old)


def test_a_root_key_without_keys_write_sees_no_buttons_and_is_refused_posting_the_forms(
    page: Page, server: Server, root_key: str
) -> None:
    api_id = api(server, root_key, "POST", "/v1/apis", {"name": "Readonly"}).json()["id"]
    key_id = api(server, root_key, "POST", f"/v1/apis/{api_id}/keys", {"name": "k"}).json()["id"]
    reader = api(
        server, root_key, "POST", "/v1/root-keys", {"permissions": ["apis.read", "keys.read", "analytics.read"]}
    ).json()["key"]
    sign_in(page, reader)
    page.get_by_role("link", name="Readonly").click()
    expect(page.get_by_role("link", name="Create a key")).to_have_count(0)
    page.get_by_role("link", name="k", exact=True).click()
    for name in ("Revoke", "Reroll", "Disable"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    check_page(page, "dashboard key read-only")
    # Navigation offers only what it may read.
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    expect(page.get_by_role("link", name="Root keys")).to_have_count(0)
    expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)
    expect(page.get_by_role("button", name="Create API")).to_have_count(0)

    token = csrf_of(page)
    forms: list[tuple[str, dict[str, str | float | bool]]] = [
        (f"/dashboard/keys/{key_id}/revoke", {"csrf": token}),
        (f"/dashboard/keys/{key_id}/reroll", {"csrf": token, "grace_hours": "0"}),
        (f"/dashboard/keys/{key_id}/disable", {"csrf": token}),
        (f"/dashboard/apis/{api_id}/keys", {"csrf": token, "name": "sneaky"}),
        ("/dashboard/apis", {"csrf": token, "name": "sneaky"}),
        ("/dashboard/root-keys", {"csrf": token, "permission": "*"}),
        ("/dashboard/webhooks", {"csrf": token, "url": "https://example.com/hook"}),
    ]
    for path, form in forms:
        answer = page.request.post(path, form=form, max_redirects=0)
        assert answer.status == 403, (path, answer.status)
    assert api(server, root_key, "GET", f"/v1/keys/{key_id}").json()["revoked_at"] is None
    page.goto("/dashboard/audit")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    check_page(page, "dashboard forbidden")


def test_every_form_without_a_valid_csrf_token_is_refused(page: Page, server: Server, root_key: str) -> None:
    api_id = api(server, root_key, "POST", "/v1/apis", {"name": "Csrf"}).json()["id"]
    key_id = api(server, root_key, "POST", f"/v1/apis/{api_id}/keys", {"name": "k"}).json()["id"]
    # The sign-in form itself: a posted root key without the form's token is refused.
    refused = httpx.post(f"{server.url}/dashboard/sign-in", data={"root_key": root_key}, follow_redirects=False)
    assert refused.status_code == 403
    assert "keystile_session" not in refused.cookies
    sign_in(page, root_key)
    forms: list[tuple[str, dict[str, str | float | bool]]] = [
        ("/dashboard/apis", {"name": "x"}),
        (f"/dashboard/apis/{api_id}/keys", {"name": "x"}),
        (f"/dashboard/keys/{key_id}/revoke", {}),
        (f"/dashboard/keys/{key_id}/reroll", {"grace_hours": "0"}),
        (f"/dashboard/keys/{key_id}/disable", {}),
        (f"/dashboard/keys/{key_id}/enable", {}),
        ("/dashboard/root-keys", {"permission": "keys.read"}),
        ("/dashboard/webhooks", {"url": "https://example.com/hook"}),
        ("/dashboard/sign-out", {}),
    ]
    for path, form in forms:
        for token in (None, "", "forged-token"):
            sent: dict[str, str | float | bool] = form if token is None else {**form, "csrf": token}
            answer = page.request.post(path, form=sent, max_redirects=0)
            assert answer.status == 403, (path, token, answer.status)
    # Nothing changed, and the session still works.
    assert api(server, root_key, "GET", f"/v1/keys/{key_id}").json()["revoked_at"] is None
    page.goto("/dashboard/apis")
    expect(page.get_by_role("heading", name="APIs", exact=True)).to_be_visible()


def test_the_pages_work_with_javascript_off_except_the_copy_button(
    browser_no_js: BrowserContext, server: Server, root_key: str
) -> None:
    page = browser_no_js.new_page()
    sign_in(page, root_key)
    api_id = api(server, root_key, "POST", "/v1/apis", {"name": "NoScript"}).json()["id"]
    page.goto(f"/dashboard/apis/{api_id}/keys/new")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Key created")).to_be_visible()
    # Without script the copy button stays hidden; the key is in a read-only field, selectable.
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()
    assert page.locator("#plain-key").input_value().startswith("ks_")


def test_the_keyboard_alone_signs_in_and_reaches_every_control(page: Page, server: Server, root_key: str) -> None:
    page.goto("/dashboard/sign-in")
    # The root key field has the focus; typing and Enter sign in.
    expect(page.get_by_label("Root key")).to_be_focused()
    page.keyboard.type(root_key)
    expect(page.get_by_label("Root key")).to_have_value(root_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="APIs", exact=True)).to_be_visible()
    # The first Tab reaches "Skip to content", which moves the focus to the page's content.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    # Tabbing on reaches the create-API form; Enter in its field submits it.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "api-name":
            break
    else:
        raise AssertionError("Tab never reached the API name field")
    page.keyboard.type("Keyboard")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("^Keyboard"))).to_be_visible()
    # Every control of the pages seen has a label that names it (axe checks it too, in check_page).
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll("input:not([type=hidden]), select, button")]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
            .map(el => el.outerHTML)"""
    )
    assert unnamed == []


def test_webhooks_add_see_a_failed_delivery_and_send_it_again(page: Page, server: Server, root_key: str) -> None:
    failing = True
    with receiver(lambda n: 500 if failing else 200) as rx:
        sign_in(page, root_key)
        nav(page, "Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        expect(page.get_by_text("No webhooks yet.")).to_be_visible()
        page.get_by_label("URL").fill(rx.url)
        page.get_by_label("Description").fill("billing")
        page.get_by_label("key.created").check()
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Add webhook").click()
        assert answer.value.headers["cache-control"] == "no-store"
        expect(page.get_by_role("heading", name="Webhook created")).to_be_visible()
        check_page(page, "dashboard webhook created")
        secret = copied_key(page)
        assert secret.startswith("whsec_")
        rx.secrets.append(secret)
        page.get_by_role("link", name="Go to the webhook").click()
        webhook_id = page.url.rsplit("/", 1)[1]
        assert secret not in page.content()

        # A key is created: the receiver answers 500 until the retries run out, and the delivery shows failed.
        api_id = api(server, root_key, "POST", "/v1/apis", {"name": "Hooked"}).json()["id"]
        key_id = api(server, root_key, "POST", f"/v1/apis/{api_id}/keys", {"name": "k"}).json()["id"]
        failed = page.locator("tbody .tag.bad", has_text="failed")
        deadline = time.monotonic() + 20
        while failed.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.3)
            page.reload()
        expect(failed).to_have_count(1)
        assert len(rx.received) >= 2  # retried before giving up
        assert all(r.verified and r.status == 500 for r in rx.received)
        expect(page.locator("tbody")).to_contain_text("key.created")
        check_page(page, "dashboard webhook")

        # The receiver recovers; "Send again" delivers the event, signed.
        failing = False
        page.get_by_role("button", name=re.compile("^Send key.created")).click()
        unique = rx.wait_for(1, timeout=15)
        [event] = unique.values()
        assert event.verified
        assert event.body["type"] == "key.created"
        assert event.body["data"]["id"] == key_id
        delivered = page.locator("tbody .tag.ok", has_text="delivered")
        deadline = time.monotonic() + 10
        while delivered.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.3)
            page.reload()
        expect(delivered).to_have_count(1)

        # Disable, rotate the secret (shown once), delete; each is in the audit log.
        page.get_by_role("button", name="Disable").click()
        expect(page.locator("dl.facts")).to_contain_text("disabled")
        page.get_by_role("button", name="Rotate secret").click()
        expect(page.get_by_role("heading", name="Webhook secret rotated")).to_be_visible()
        rotated = page.locator("#plain-key").input_value()
        assert rotated.startswith("whsec_")
        assert rotated != secret
        page.get_by_role("link", name="Go to the webhook").click()
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_text("No webhooks yet.")).to_be_visible()
        actions = [e["action"] for e in api(server, root_key, "GET", f"/v1/audit?target={webhook_id}").json()["items"]]
        for action in ("webhook.create", "webhook.retry", "webhook.update", "webhook.rotate_secret", "webhook.delete"):
            assert action in actions, actions
    assert_nowhere(server, secret, rotated)
