"""SPEC R6: Unkey's own Python SDK (``unkey-py``, which validates every answer against its models) drives every
Unkey-compatible operation against a real ``keystile serve`` on SQLite and on PostgreSQL. Assertions read the
SDK's parsed models, as an application that moves from Unkey would."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from unkey.py import Unkey, errors, models

from tests.e2e.server import Server
from tests.unkey.conftest import sdk

pytestmark = pytest.mark.e2e
T = TypeVar("T")


def v1(server: Server, method: str, path: str, **kwargs: Any) -> Any:
    """A call to Keystile's own API with the first root key (for what Unkey's API does not cover)."""
    response = httpx.request(
        method, server.url + path, headers={"authorization": f"Bearer {server.root_key()}"}, timeout=10, **kwargs
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def logged(server: Server, key_id: str) -> list[dict[str, Any]]:
    """The verification events of a key, once the server has written them (it batches them off the hot path)."""
    deadline = time.monotonic() + 10
    while True:
        items: list[dict[str, Any]] = v1(server, "GET", "/v1/logs", params={"key_id": key_id})["items"]
        if items or time.monotonic() > deadline:
            return items
        time.sleep(0.1)  # waiting for the server's writer, not for time to pass


def present(page: T | None) -> T:
    """A list's first page (the SDK types every page as optional: a next page may not exist)."""
    assert page is not None
    return page


def make_api(unkey: Unkey, name: str = "payments") -> str:
    return unkey.apis.create_api(name=name).data.api_id


def test_a_key_is_created_shown_verified_updated_rerolled_and_deleted(
    server: Server, unkey: Unkey, tmp_path: Path
) -> None:
    api_id = make_api(unkey)
    assert unkey.apis.get_api(api_id=api_id).data == models.V2ApisGetAPIResponseData(id=api_id, name="payments")
    expires = int(time.time() * 1000) + 86_400_000
    created = unkey.keys.create_key(
        api_id=api_id,
        name="checkout",
        external_id="user_42",
        meta={"plan": "pro", "limits": {"a": 1}},
        permissions=["docs.read", "docs.write"],
        expires=expires,
        credits=models.KeyCreditsData(
            remaining=10, refill=models.KeyCreditsRefill(interval=models.KeyCreditsRefillInterval.DAILY, amount=10)
        ),
        ratelimits=[models.RatelimitRequest(name="requests", limit=100, duration=60_000, auto_apply=True)],
    )
    assert created.meta.request_id
    key_id, plain = created.data.key_id, created.data.key
    assert key_id.startswith("key_")
    assert plain.startswith("ks_")

    shown = unkey.keys.get_key(key_id=key_id).data
    assert (shown.key_id, shown.name, shown.enabled, shown.expires) == (key_id, "checkout", True, expires)
    assert shown.start == plain[:7]
    assert shown.meta == {"plan": "pro", "limits": {"a": 1}}
    assert shown.permissions == ["docs.read", "docs.write"]
    assert shown.credits is not None
    assert shown.credits.remaining == 10
    assert shown.credits.refill is not None
    assert shown.credits.refill.interval == models.KeyCreditsRefillInterval.DAILY
    assert shown.identity is not None
    assert shown.identity.external_id == "user_42"
    assert shown.ratelimits is not None
    [limit] = shown.ratelimits
    assert (limit.name, limit.limit, limit.duration, limit.auto_apply) == ("requests", 100, 60_000, True)
    assert unkey.keys.whoami(key=plain).data == shown

    verified = unkey.keys.verify_key(
        key=plain, permissions="docs.read AND docs.write", credits={"cost": 3}, tags=["path=/checkout"]
    )
    data = verified.data
    assert (data.valid, data.code, data.key_id, data.name) == (True, models.Code.VALID, key_id, "checkout")
    assert data.credits == 7
    assert data.enabled is True
    assert data.expires == expires
    assert data.identity is not None
    assert data.identity.external_id == "user_42"
    assert data.ratelimits is not None
    assert data.ratelimits[0].id == limit.id
    assert (data.ratelimits[0].remaining, data.ratelimits[0].exceeded) == (99, False)

    # Recorded as a verification event, as on /v1 (the event writer flushes within a second or so).
    [event] = logged(server, key_id)
    assert (event["outcome"], event["request_id"], event["tags"]) == (
        "VALID",
        verified.meta.request_id,
        ["path=/checkout"],
    )

    unkey.keys.update_key(key_id=key_id, name="renamed", meta={"plan": "team"}, expires=None, external_id=None)
    updated = unkey.keys.get_key(key_id=key_id).data
    assert (updated.name, updated.meta, updated.expires, updated.identity) == ("renamed", {"plan": "team"}, None, None)

    assert unkey.keys.update_credits(key_id=key_id, operation=models.Operation.INCREMENT, value=5).data.remaining == 12
    assert unkey.keys.update_credits(key_id=key_id, operation=models.Operation.DECREMENT, value=2).data.remaining == 10
    assert unkey.keys.update_credits(key_id=key_id, operation=models.Operation.SET, value=None).data.remaining is None
    assert unkey.keys.get_key(key_id=key_id).data.credits is None

    rerolled = unkey.keys.reroll_key(key_id=key_id, expiration=60_000).data
    assert rerolled.key_id != key_id
    assert rerolled.key != plain
    assert unkey.keys.verify_key(key=plain).data.valid is True  # the old key works during the grace period
    assert unkey.keys.verify_key(key=rerolled.key).data.name == "renamed"

    unkey.keys.delete_key(key_id=rerolled.key_id)  # soft: the record stays, the key stops
    assert unkey.keys.verify_key(key=rerolled.key).data.code == models.Code.NOT_FOUND
    assert unkey.keys.get_key(key_id=rerolled.key_id).data.key_id == rerolled.key_id
    unkey.keys.delete_key(key_id=rerolled.key_id, permanent=True)
    with pytest.raises(errors.NotFoundErrorResponse) as gone:
        unkey.keys.get_key(key_id=rerolled.key_id)
    assert gone.value.data.error.type == "https://unkey.com/docs/errors/unkey/data/key_not_found"

    # Audited as for /v1: the actor is the root key that called.
    entries = v1(server, "GET", "/v1/audit", params={"target": key_id})["items"]
    assert {"key.create", "key.update", "key.credits", "key.reroll"} <= {e["action"] for e in entries}
    assert all(e["actor"].startswith("rk_") for e in entries)

    # The plain-text keys went out in their creating answers only: not in the log, nor in the database.
    for secret in (plain, rerolled.key):
        assert secret not in server.output()
        for stored in (tmp_path / "data").glob("keystile.db*"):
            assert secret.encode() not in stored.read_bytes()

    unkey.apis.delete_api(api_id=api_id)
    with pytest.raises(errors.NotFoundErrorResponse) as no_api:
        unkey.apis.get_api(api_id=api_id)
    assert no_api.value.data.error.type.endswith("/unkey/data/api_not_found")


def test_every_verification_code_comes_back_as_unkey_names_it(server: Server, unkey: Unkey) -> None:
    api_id = make_api(unkey)

    def key(**settings: Any) -> tuple[str, str]:
        made = unkey.keys.create_key(api_id=api_id, **settings).data
        return made.key_id, made.key

    def code(plain: str, **check: Any) -> models.Code:
        data = unkey.keys.verify_key(key=plain, **check).data
        assert data.valid is (data.code == models.Code.VALID)
        return data.code

    _, valid = key(permissions=["docs.read"])
    assert code(valid, permissions="docs.read") == models.Code.VALID
    assert code(valid, permissions="docs.write") == models.Code.INSUFFICIENT_PERMISSIONS
    assert code("ks_" + "0" * 38) == models.Code.NOT_FOUND
    nothing = unkey.keys.verify_key(key="not-a-key-at-all").data
    assert (nothing.valid, nothing.code, nothing.key_id, nothing.meta) == (False, models.Code.NOT_FOUND, None, None)

    _, disabled = key(enabled=False)
    assert code(disabled) == models.Code.DISABLED

    _, once = key(credits=models.KeyCreditsData(remaining=1))
    assert code(once) == models.Code.VALID
    assert code(once) == models.Code.USAGE_EXCEEDED

    _, limited = key(ratelimits=[models.RatelimitRequest(name="burst", limit=1, duration=60_000, auto_apply=True)])
    assert code(limited) == models.Code.VALID
    refused = unkey.keys.verify_key(key=limited).data
    assert refused.code == models.Code.RATE_LIMITED
    assert refused.ratelimits is not None
    assert refused.ratelimits[0].exceeded is True
    assert refused.ratelimits[0].reset > time.time() * 1000

    walled_id, walled = key()
    v1(server, "PATCH", f"/v1/keys/{walled_id}", json={"ip_allowlist": ["10.0.0.0/8"]})
    assert code(walled) == models.Code.FORBIDDEN

    old_id, old = key()
    unkey.keys.reroll_key(key_id=old_id, expiration=0)  # 0: the old key stops now
    assert code(old) == models.Code.EXPIRED

    revoked_id, revoked = key()
    v1(server, "POST", f"/v1/keys/{revoked_id}/revoke")
    revoked_answer = unkey.keys.verify_key(key=revoked).data
    assert (revoked_answer.code, revoked_answer.key_id) == (models.Code.NOT_FOUND, None)


def test_permissions_and_roles_are_added_removed_and_set(server: Server, unkey: Unkey) -> None:
    api_id = make_api(unkey)
    v1(server, "POST", f"/v1/apis/{api_id}/roles", json={"name": "editor", "permissions": ["docs.write"]})
    v1(server, "POST", f"/v1/apis/{api_id}/roles", json={"name": "viewer", "permissions": ["docs.read"]})
    made = unkey.keys.create_key(api_id=api_id).data

    added = unkey.keys.add_permissions(key_id=made.key_id, permissions=["a.read", "b.read"]).data
    assert [p.slug for p in added] == ["a.read", "b.read"]
    assert [p.slug for p in unkey.keys.remove_permissions(key_id=made.key_id, permissions=["a.read"]).data] == [
        "b.read"
    ]
    assert [p.slug for p in unkey.keys.set_permissions(key_id=made.key_id, permissions=["c.*"]).data] == ["c.*"]
    assert unkey.keys.verify_key(key=made.key, permissions="c.anything").data.code == models.Code.VALID

    roles = unkey.keys.add_roles(key_id=made.key_id, roles=["editor", "viewer"]).data
    assert [r.name for r in roles] == ["editor", "viewer"]
    assert roles[0].permissions is not None
    assert [p.slug for p in roles[0].permissions] == ["docs.write"]
    assert unkey.keys.verify_key(key=made.key, permissions="docs.write").data.code == models.Code.VALID
    assert [r.name for r in unkey.keys.remove_roles(key_id=made.key_id, roles=["editor"]).data] == ["viewer"]
    assert unkey.keys.verify_key(key=made.key, permissions="docs.write").data.code == (
        models.Code.INSUFFICIENT_PERMISSIONS
    )
    assert [r.name for r in unkey.keys.set_roles(key_id=made.key_id, roles=["editor"]).data] == ["editor"]
    verified = unkey.keys.verify_key(key=made.key).data
    assert verified.roles == ["editor"]
    assert verified.permissions == ["c.*", "docs.write"]
    with pytest.raises(errors.NotFoundErrorResponse) as unknown:
        unkey.keys.add_roles(key_id=made.key_id, roles=["nobody"])
    assert unknown.value.data.error.type.endswith("/unkey/data/role_not_found")


def test_keys_are_listed_in_pages_and_by_external_id(unkey: Unkey) -> None:
    api_id = make_api(unkey)
    made = [unkey.keys.create_key(api_id=api_id, external_id=f"user_{i % 2}").data.key_id for i in range(5)]
    first = present(unkey.apis.list_keys(api_id=api_id, limit=2))
    assert first.result.pagination.has_more is True
    assert first.result.pagination.cursor is not None
    seen = [k.key_id for k in first.result.data]
    page = first.next()  # the SDK's own paging follows the cursor
    while page is not None:
        seen += [k.key_id for k in page.result.data]
        page = page.next()
    assert seen == made[::-1]  # newest first, each once
    owned = present(unkey.apis.list_keys(api_id=api_id, external_id="user_1")).result
    assert [k.key_id for k in owned.data] == [made[3], made[1]]
    assert owned.pagination.has_more is False


def test_identities_are_created_read_listed_updated_and_deleted(unkey: Unkey) -> None:
    identity_id = unkey.identities.create_identity(
        external_id="acme",
        meta={"tier": "gold", "nested": {"x": 1}},
        ratelimits=[models.RatelimitRequest(name="shared", limit=2, duration=60_000, auto_apply=True)],
    ).data.identity_id
    by_external = unkey.identities.get_identity(identity="acme").data
    assert unkey.identities.get_identity(identity=identity_id).data == by_external
    assert (by_external.id, by_external.external_id, by_external.meta) == (
        identity_id,
        "acme",
        {"tier": "gold", "nested": {"x": 1}},
    )
    with pytest.raises(errors.ConflictErrorResponse) as twice:
        unkey.identities.create_identity(external_id="acme")
    assert twice.value.data.error.type.endswith("/unkey/data/identity_already_exists")

    # The identity's limits are shared by its keys, across APIs.
    keys = [unkey.keys.create_key(api_id=make_api(unkey, n), external_id="acme").data.key for n in ("a", "b")]
    first = unkey.keys.verify_key(key=keys[0]).data
    assert first.identity is not None
    assert first.identity.id == identity_id
    assert first.identity.meta is not None
    assert unkey.keys.verify_key(key=keys[1]).data.code == models.Code.VALID
    assert unkey.keys.verify_key(key=keys[0]).data.code == models.Code.RATE_LIMITED

    for name in ("beta", "gamma"):
        unkey.identities.create_identity(external_id=name)
    page = present(unkey.identities.list_identities(limit=2)).result
    assert [i.external_id for i in page.data] == ["gamma", "beta"]
    assert page.pagination.has_more
    rest = present(unkey.identities.list_identities(limit=2, cursor=page.pagination.cursor)).result
    assert [i.external_id for i in rest.data] == ["acme"]
    assert rest.pagination.has_more is False

    updated = unkey.identities.update_identity(identity="acme", meta={"tier": "silver"}, ratelimits=[]).data
    assert (updated.meta, updated.ratelimits) == ({"tier": "silver"}, None)
    assert unkey.keys.verify_key(key=keys[0]).data.code == models.Code.VALID  # its shared limit is gone

    unkey.identities.delete_identity(identity=identity_id)
    with pytest.raises(errors.NotFoundErrorResponse) as gone:
        unkey.identities.get_identity(identity="acme")
    assert gone.value.data.error.type.endswith("/unkey/data/identity_not_found")


def test_standalone_rate_limits_need_no_namespace_created_first(unkey: Unkey) -> None:
    answers = [
        unkey.ratelimit.limit(namespace="email.send", identifier="user_1", limit=2, duration=60_000).data
        for _ in range(3)
    ]
    assert [a.success for a in answers] == [True, True, False]
    assert [a.remaining for a in answers] == [1, 0, 0]
    assert answers[0].limit == 2
    assert answers[2].reset > time.time() * 1000
    other = unkey.ratelimit.limit(namespace="email.send", identifier="user_2", limit=2, duration=60_000).data
    assert other.success is True


def test_errors_come_back_as_the_sdk_models_of_unkey(server: Server, unkey: Unkey) -> None:
    api_id = make_api(unkey)
    with sdk(server, "ks_root_" + "x" * 38) as stranger, pytest.raises(errors.UnauthorizedErrorResponse) as bad:
        stranger.apis.get_api(api_id=api_id)
    assert bad.value.data.error.status == 401
    assert bad.value.data.meta.request_id
    assert bad.value.data.error.type == "https://unkey.com/docs/errors/unkey/authentication/key_not_found"

    reader = v1(server, "POST", "/v1/root-keys", json={"permissions": ["keys.read"]})["key"]
    with sdk(server, reader) as weak:
        with pytest.raises(errors.ForbiddenErrorResponse) as denied:
            weak.apis.create_api(name="nope")
        with pytest.raises(errors.ForbiddenErrorResponse):
            weak.keys.verify_key(key="ks_whatever")  # verifying needs keys.verify, as on /v1
    assert denied.value.data.error.status == 403
    assert denied.value.data.error.type.endswith("/unkey/authorization/insufficient_permissions")

    with pytest.raises(errors.NotFoundErrorResponse) as missing:
        unkey.keys.get_key(key_id="key_doesnotexist")
    assert missing.value.data.error.status == 404

    with pytest.raises(errors.BadRequestErrorResponse) as invalid:
        unkey.keys.create_key(
            api_id=api_id,
            credits=models.KeyCreditsData(
                remaining=5,
                refill=models.KeyCreditsRefill(interval=models.KeyCreditsRefillInterval.DAILY, amount=5, refill_day=3),
            ),
        )
    assert invalid.value.data.error.status == 400
    assert invalid.value.data.error.errors
    assert invalid.value.data.error.errors[0].location == "body.credits.refill.refillDay"

    with pytest.raises(errors.BadRequestErrorResponse) as query:
        unkey.keys.verify_key(key="ks_whatever", permissions="a AND (b")
    assert query.value.data.error.type.endswith("/permissions_query_syntax_error")

    with pytest.raises(errors.BadRequestErrorResponse) as not_kept:
        unkey.keys.create_key(api_id=api_id, recoverable=True)  # the API does not keep keys recoverable
    assert not_kept.value.data.error.errors[0].location == "body.recoverable"

    # A route Unkey's API does not have here answers Unkey's 404 body.
    raw = httpx.post(f"{server.url}/v2/keys.notAnOperation", json={}, headers={"authorization": "Bearer x"})
    assert raw.status_code == 404
    assert raw.headers["content-type"] == "application/json"
    body = raw.json()
    assert set(body) == {"meta", "error"}
    assert body["meta"]["requestId"] == raw.headers["x-request-id"]
    assert {"title", "detail", "status", "type"} <= set(body["error"])
    assert body["error"]["status"] == 404


def test_a_root_key_scoped_to_another_api_sees_nothing_of_this_one(server: Server, unkey: Unkey) -> None:
    mine, theirs = make_api(unkey, "mine"), make_api(unkey, "theirs")
    their_key = unkey.keys.create_key(api_id=theirs).data
    scoped = v1(server, "POST", "/v1/root-keys", json={"permissions": [f"api.{mine}.keys.*", f"api.{mine}.apis.read"]})[
        "key"
    ]
    with sdk(server, scoped) as narrow:
        answer = narrow.keys.verify_key(key=their_key.key).data
        assert (answer.valid, answer.code, answer.key_id) == (False, models.Code.NOT_FOUND, None)
        with pytest.raises(errors.NotFoundErrorResponse):
            narrow.keys.get_key(key_id=their_key.key_id)
        with pytest.raises(errors.NotFoundErrorResponse):
            narrow.keys.whoami(key=their_key.key)
        with pytest.raises(errors.NotFoundErrorResponse):
            narrow.apis.list_keys(api_id=theirs)
        own = narrow.keys.create_key(api_id=mine).data
        assert narrow.keys.verify_key(key=own.key).data.code == models.Code.VALID


def test_keys_migrated_by_their_digests_verify_as_they_are(server: Server, unkey: Unkey) -> None:
    api_id = make_api(unkey)
    # Keys of another system's format: Unkey exports base64 SHA-256 digests; hex ones are taken too.
    unkey_key, other_key = "unkey_3ZdD8pW1qQk7Lx", "legacy-key-0042"
    as_base64 = base64.b64encode(hashlib.sha256(unkey_key.encode()).digest()).decode()
    as_hex = hashlib.sha256(other_key.encode()).hexdigest()
    answer = unkey.keys.migrate_keys(
        migration_id="from-unkey",
        api_id=api_id,
        keys=[
            models.V2KeysMigrateKeyData(
                hash=as_base64,
                name="old",
                external_id="user_7",
                permissions=["docs.read"],
                credits=models.KeyCreditsData(remaining=5),
            ),
            models.V2KeysMigrateKeyData(hash=as_hex),
        ],
    ).data
    assert [m.hash for m in answer.migrated] == [as_base64, as_hex]
    assert answer.failed == []

    verified = unkey.keys.verify_key(key=unkey_key, permissions="docs.read").data
    assert (verified.valid, verified.key_id, verified.name, verified.credits) == (
        True,
        answer.migrated[0].key_id,
        "old",
        4,
    )
    assert verified.identity is not None
    assert verified.identity.external_id == "user_7"
    assert unkey.keys.verify_key(key=other_key).data.valid is True
    assert unkey.keys.verify_key(key=unkey_key + "x").data.code == models.Code.NOT_FOUND

    # Run again (an interrupted migration is simply repeated): what the API holds is not migrated twice.
    again = unkey.keys.migrate_keys(
        migration_id="from-unkey", api_id=api_id, keys=[models.V2KeysMigrateKeyData(hash=as_base64)]
    ).data
    assert (again.migrated, again.failed) == ([], [as_base64])
    with pytest.raises(errors.BadRequestErrorResponse) as bad:
        unkey.keys.migrate_keys(
            migration_id="from-unkey", api_id=api_id, keys=[models.V2KeysMigrateKeyData(hash="not a digest")]
        )
    assert bad.value.data.error.errors[0].location == "body.keys[0].hash"


def test_recoverable_keys_are_read_back_with_decrypt(server: Server, unkey: Unkey) -> None:
    api_id = make_api(unkey)
    made = unkey.keys.create_key(api_id=api_id).data
    with pytest.raises(errors.APIError) as not_kept:
        unkey.keys.get_key(key_id=made.key_id, decrypt=True)
    assert not_kept.value.status_code == 412  # the API keeps no keys recoverable, as Unkey answers

    v1(server, "PATCH", f"/v1/apis/{api_id}", json={"recoverable": True})
    kept = unkey.keys.create_key(api_id=api_id, recoverable=True).data
    opted_out = unkey.keys.create_key(api_id=api_id).data  # Unkey's SDK sends recoverable: false by default
    assert unkey.keys.get_key(key_id=kept.key_id, decrypt=True).data.plaintext == kept.key
    assert unkey.keys.get_key(key_id=kept.key_id).data.plaintext is None
    assert unkey.keys.get_key(key_id=opted_out.key_id, decrypt=True).data.plaintext is None
    listed = present(unkey.apis.list_keys(api_id=api_id, decrypt=True)).result.data
    assert {k.key_id: k.plaintext for k in listed} == {kept.key_id: kept.key, opted_out.key_id: None, made.key_id: None}

    # Reading a key back is audited, without the key, and needs keys.decrypt.
    entries = v1(server, "GET", "/v1/audit", params={"target": kept.key_id, "action": "key.decrypt"})["items"]
    assert len(entries) == 2
    assert kept.key not in str(entries)
    reader = v1(server, "POST", "/v1/root-keys", json={"permissions": ["keys.read"]})["key"]
    with sdk(server, reader) as weak, pytest.raises(errors.ForbiddenErrorResponse):
        weak.keys.get_key(key_id=kept.key_id, decrypt=True)
