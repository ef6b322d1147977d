"""The customer portal without a browser (SPEC D2): its sign-in links and ``keystile.portal.mount`` inside a
provider's own Starlette app, whose own login decides the owner."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from keystile import portal
from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewKey, NewRootKey
from keystile.core.models import AuditFilter
from keystile.errors import Forbidden, NotFound, Unauthenticated
from keystile.service import Actor, Keystile
from keystile.service.portal import PortalGrant, PortalPolicy
from keystile.web.portal import theme_css


async def test_a_link_signs_in_once_and_expires(ks: Keystile, root: tuple[Actor, str], clock: ManualClock) -> None:
    actor, _ = root
    api = await ks.apis.create(actor, NewApi(name="weather"))
    grant = PortalGrant(api.id, "alice", PortalPolicy(max_keys=1))
    link = await ks.portal.create_link(actor, grant)
    session_id, redeemed = await ks.portal.redeem(link.token)
    assert redeemed == grant
    assert await ks.portal.session(session_id) is not None
    with pytest.raises(Unauthenticated):
        await ks.portal.redeem(link.token)  # used
    late = await ks.portal.create_link(actor, grant, ttl_s=60)
    clock.advance(61)
    with pytest.raises(Unauthenticated):
        await ks.portal.redeem(late.token)  # expired
    with pytest.raises(Unauthenticated):
        await ks.portal.redeem("made-up")
    # The portal session lasts an hour.
    clock.advance(3600)
    assert await ks.portal.session(session_id) is None
    # The audit entry names the owner and the policy, never the token.
    [entry] = (
        await ks.audit.list(actor.principal, AuditFilter(action="portal.session.create"), cursor=None, limit=10)
    ).items[:1]
    assert entry.changes["owner_id"] == "alice"
    assert late.token not in str(entry.changes)


async def test_links_need_keys_write_for_the_api(ks: Keystile, root: tuple[Actor, str]) -> None:
    actor, _ = root
    api = await ks.apis.create(actor, NewApi(name="weather"))
    other = await ks.apis.create(actor, NewApi(name="other"))
    reader, _ = await ks.root_keys.create(actor, NewRootKey(permissions=["keys.read"]))
    scoped, _ = await ks.root_keys.create(actor, NewRootKey(permissions=[f"api.{other.id}.keys.write"]))
    grant = PortalGrant(api.id, "alice")
    with pytest.raises(Forbidden):
        await ks.portal.create_link(Actor(await ks.root_keys.principal(reader.id)), grant)
    with pytest.raises(NotFound):
        await ks.portal.create_link(Actor(await ks.root_keys.principal(scoped.id)), grant)


async def test_a_revoked_root_key_has_no_principal(ks: Keystile, root: tuple[Actor, str]) -> None:
    actor, _ = root
    key, _ = await ks.root_keys.create(actor, NewRootKey(permissions=["keys.read"]))
    assert (await ks.root_keys.principal(key.id)).allows("keys.read")
    await ks.root_keys.revoke(actor, key.id)
    for ref in (key.id, "rk_unknown", "key_0000000000000000000000"):
        with pytest.raises(Unauthenticated):
            await ks.root_keys.principal(ref)


async def test_mounted_in_a_providers_app_the_providers_login_decides_the_owner(
    ks: Keystile, root: tuple[Actor, str]
) -> None:
    actor, _ = root
    api = await ks.apis.create(actor, NewApi(name="weather"))
    bob, _ = await ks.keys.create(actor, api.id, NewKey(name="bob's", owner_id="bob"))

    async def owner(request: Request) -> str | None:  # the provider's own login (here: a header it trusts)
        return request.headers.get("x-user")

    app = Starlette()
    mounted = portal.mount(
        app,
        path="/account/keys",
        owner=owner,
        keystile=ks,
        api_id=api.id,
        policy=portal.Policy(max_keys=3, permissions=("forecast.read",)),
        title="Weather Co. keys",
        theme={"--ks-accent": "#0b5d3b", "--ks-logo": 'url("/logo.svg")'},
    )
    assert mounted is not None
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://provider") as http:
        assert (await http.get("/account/keys/")).status_code == 401  # nobody signed in
        alice = {"x-user": "alice"}
        page = await http.get("/account/keys/", headers=alice)
        assert page.status_code == 200
        assert "Weather Co. keys" in page.text
        assert "Content-Security-Policy" in page.headers
        assert page.headers["cache-control"] == "no-store"
        assert '<link rel="stylesheet" href="/account/keys/theme.css">' in page.text
        theme = await http.get("/account/keys/theme.css")
        assert "--ks-accent: #0b5d3b;" in theme.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        csrf = token[1]
        assert http.cookies.get("keystile_portal_csrf") == csrf

        # Without the CSRF token (or with another), nothing is created.
        for form in ({}, {"csrf": "forged"}):
            refused = await http.post("/account/keys/keys", data={**form, "name": "x"}, headers=alice)
            assert refused.status_code == 403
        created = await http.post(
            "/account/keys/keys", data={"csrf": csrf, "name": "laptop", "permission": "forecast.read"}, headers=alice
        )
        assert created.status_code == 200
        assert created.headers["cache-control"] == "no-store"
        plain = re.search(r'value="(ks_[0-9A-Za-z]+)"', created.text)
        assert plain is not None
        [mine] = await ks.portal.keys(PortalGrant(api.id, "alice"))
        assert mine.owner_id == "alice"
        assert mine.permissions == ("forecast.read",)
        assert (await http.get(f"/account/keys/keys/{mine.id}", headers=alice)).status_code == 200

        # Bob's key is not Alice's to see or touch; Bob sees only his.
        assert (await http.get(f"/account/keys/keys/{bob.id}", headers=alice)).status_code == 404
        revoke = await http.post(f"/account/keys/keys/{bob.id}/revoke", data={"csrf": csrf}, headers=alice)
        assert revoke.status_code == 404
        assert (await ks.keys.get(actor.principal, bob.id)).revoked_at is None
        bobs = await http.get("/account/keys/", headers={"x-user": "bob"})
        assert "bob&#39;s" in bobs.text
        assert "laptop" not in bobs.text

        # Permissions beyond the policy are refused.
        beyond = await http.post(
            "/account/keys/keys", data={"csrf": csrf, "permission": "forecast.write"}, headers=alice
        )
        assert beyond.status_code == 403


def test_a_theme_takes_css_variables_only() -> None:
    assert theme_css({"--ks-accent": "#123456"}) == ":root {\n  --ks-accent: #123456;\n}\n"
    for bad in ({"color": "red"}, {"--ks-accent": "red; } body { display: none"}, {"--x": "</style>"}):
        with pytest.raises(ValueError, match="CSS variable"):
            theme_css(bad)
