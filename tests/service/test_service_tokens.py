"""API tokens through the services (SPEC T1, T2), on every backend: issuing is a verification (codes, limits and
credits apply), tokens carry the claims and check against the published keys, rotation keeps old tokens valid
until they expire, revoked keys' tokens answer REVOKED, and signing keys are sealed under the master key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystile.config import Settings
from keystile.core.clock import ManualClock
from keystile.core.commands import NewApi, NewCredits, NewKey
from keystile.core.models import AuditFilter, RateLimit
from keystile.core.verify import Code, KeyCheck
from keystile.errors import Forbidden, InvalidInput, MasterKeyUnavailable
from keystile.service import Keystile
from keystile.service.tokens import MAX_TTL_S, TokenService
from keystile.service.vault import MasterKeys
from keystile.service.verification import OPERATOR
from keystile.storage import SqlStorage

if TYPE_CHECKING:
    from tests.service.conftest import Admin


async def key_of(admin: Admin, spec: NewKey | None = None) -> tuple[str, str, str]:
    """A new key: its API id, id and plain text."""
    api_id = (await admin.api(NewApi(name="weather"))).id
    key, plain = await admin.ks.keys.create(admin.actor, api_id, spec or NewKey(permissions=["a.read", "a.write"]))
    return api_id, key.id, plain


def claims_of(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_a_token_carries_the_claims_and_checks_against_the_published_key(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    api_id, key_id, plain = await key_of(admin, NewKey(owner_id="alice", permissions=["a.read", "a.write"]))

    issued = await ks.tokens.issue(KeyCheck(plain), ttl_s=600)

    assert issued.result.valid
    assert issued.token is not None
    token = issued.token
    header = jwt.get_unverified_header(token.token)
    assert (header["alg"], header["typ"], header["kid"]) == ("EdDSA", "JWT", token.kid)
    now = int(clock.now())
    claims = claims_of(token.token)
    assert claims == {
        "iss": ks.tokens.issuer,
        "sub": "alice",
        "key_id": key_id,
        "api_id": api_id,
        "scope": "a.read a.write",
        "iat": now,
        "exp": now + 600,
        "jti": token.jti,
    }
    [jwk] = (await ks.tokens.jwks())["keys"]
    assert (jwk["kid"], jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == (token.kid, "OKP", "Ed25519", "EdDSA", "sig")
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token.token, public, algorithms=["EdDSA"], options={"verify_exp": False, "verify_iat": False})
    checked = await ks.tokens.verify(OPERATOR, token.token)
    assert (checked.code, checked.kid) == (Code.VALID, token.kid)


async def test_sub_is_the_key_id_without_an_owner_and_a_scope_narrows(ks: Keystile, admin: Admin) -> None:
    _, key_id, plain = await key_of(admin)

    issued = await ks.tokens.issue(KeyCheck(plain), permissions=["a.read"])

    assert issued.token is not None
    claims = claims_of(issued.token.token)
    assert (claims["sub"], claims["scope"]) == (key_id, "a.read")


async def test_a_scope_the_key_does_not_hold_is_refused_without_spending(ks: Keystile, admin: Admin) -> None:
    _, key_id, plain = await key_of(admin, NewKey(permissions=["a.read"], credits=NewCredits(remaining=5)))

    refused = await ks.tokens.issue(KeyCheck(plain), permissions=["a.read", "admin"])

    assert (refused.result.code, refused.token) == (Code.INSUFFICIENT_PERMISSIONS, None)
    key = await ks.storage.get_key(key_id)
    assert key is not None
    assert key.credits is not None
    assert key.credits.remaining == 5
    for names in (["docs.*"], ["a.read", "AND"], ["or"], ["a" * 129]):  # query words and over-long names too
        with pytest.raises(InvalidInput) as bad:
            await ks.tokens.issue(KeyCheck(plain), permissions=names)
        assert bad.value.code == "invalid_scope", names


async def test_disabled_expired_unknown_and_limited_keys_get_no_token(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    _, _disabled_id, disabled = await key_of(admin, NewKey(enabled=False))
    assert (await ks.tokens.issue(KeyCheck(disabled))).result.code == Code.DISABLED

    _, _, unknown = await key_of(admin)
    assert (await ks.tokens.issue(KeyCheck(unknown + "x"))).result.code == Code.NOT_FOUND

    _, _limited_id, limited = await key_of(admin, NewKey(ratelimits=[RateLimit("burst", 1, 60_000)]))
    assert (await ks.tokens.issue(KeyCheck(limited))).token is not None
    limited_again = await ks.tokens.issue(KeyCheck(limited))
    assert (limited_again.result.code, limited_again.token) == (Code.RATE_LIMITED, None)

    from datetime import UTC, datetime

    soon = datetime.fromtimestamp(clock.now() + 60, UTC)
    _, _, expiring = await key_of(admin, NewKey(expires_at=soon))
    capped = await ks.tokens.issue(KeyCheck(expiring), ttl_s=3600)
    assert capped.token is not None
    assert capped.token.expires_in == 60, "a token does not outlive its key"
    clock.advance(61)
    assert (await ks.tokens.issue(KeyCheck(expiring))).result.code == Code.EXPIRED


async def test_issuing_spends_credits(ks: Keystile, admin: Admin) -> None:
    _, _key_id, plain = await key_of(admin, NewKey(credits=NewCredits(remaining=2)))

    assert (await ks.tokens.issue(KeyCheck(plain))).token is not None
    assert (await ks.tokens.issue(KeyCheck(plain))).token is not None
    out = await ks.tokens.issue(KeyCheck(plain))

    assert (out.result.code, out.token) == (Code.USAGE_EXCEEDED, None)


async def test_ttl_is_bounded(ks: Keystile, admin: Admin) -> None:
    _, _, plain = await key_of(admin)
    for ttl in (0, MAX_TTL_S + 1):
        with pytest.raises(InvalidInput) as bad:
            await ks.tokens.issue(KeyCheck(plain), ttl_s=ttl)
        assert bad.value.code == "invalid_ttl"


async def test_a_token_fails_after_exp(ks: Keystile, admin: Admin, clock: ManualClock) -> None:
    _, _, plain = await key_of(admin)
    issued = await ks.tokens.issue(KeyCheck(plain), ttl_s=30)
    assert issued.token is not None

    clock.advance(29)
    assert (await ks.tokens.verify(OPERATOR, issued.token.token)).code == Code.VALID
    clock.advance(1)
    assert (await ks.tokens.verify(OPERATOR, issued.token.token)).code == Code.EXPIRED


async def test_revoked_deleted_and_disabled_keys_tokens_answer_so(ks: Keystile, admin: Admin) -> None:
    from keystile.core.commands import KeyUpdate

    tokens = {}
    ids = {}
    for name in ("revoked", "deleted", "disabled"):
        _, ids[name], plain = await key_of(admin)
        issued = await ks.tokens.issue(KeyCheck(plain))
        assert issued.token is not None
        tokens[name] = issued.token.token

    await ks.keys.revoke(admin.actor, ids["revoked"])
    await ks.keys.delete(admin.actor, ids["deleted"])
    await ks.keys.update(admin.actor, ids["disabled"], KeyUpdate(enabled=False))

    assert (await ks.tokens.verify(OPERATOR, tokens["revoked"])).code == Code.REVOKED
    assert (await ks.tokens.verify(OPERATOR, tokens["deleted"])).code == Code.REVOKED
    assert (await ks.tokens.verify(OPERATOR, tokens["disabled"])).code == Code.DISABLED


async def test_forged_foreign_and_malformed_tokens_are_not_found(ks: Keystile, admin: Admin) -> None:
    _, _, plain = await key_of(admin)
    issued = await ks.tokens.issue(KeyCheck(plain))
    assert issued.token is not None
    claims = claims_of(issued.token.token)
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": issued.token.kid})
    other_issuer = TokenService(ks.ctx, ks.vault, ks.verification, "https://elsewhere.example")
    foreign = await other_issuer.issue(KeyCheck(plain))
    assert foreign.token is not None
    head, body, signature = issued.token.token.split(".")

    for token in (forged, foreign.token.token, "not a token", f"{head}.{body}.{signature[::-1]}", ""):
        assert (await ks.tokens.verify(OPERATOR, token)).code == Code.NOT_FOUND


async def test_a_root_key_verifies_tokens_of_its_apis_only(ks: Keystile, admin: Admin) -> None:
    api_id, _, plain = await key_of(admin)
    other_api = (await admin.api(NewApi(name="other"))).id
    issued = await ks.tokens.issue(KeyCheck(plain))
    assert issued.token is not None
    mine = await admin.actor_with(f"api.{api_id}.keys.verify")
    theirs = await admin.actor_with(f"api.{other_api}.keys.verify")
    nothing = await admin.actor_with("apis.read")

    assert (await ks.tokens.verify(mine.principal, issued.token.token)).code == Code.VALID
    assert (await ks.tokens.verify(theirs.principal, issued.token.token)).code == Code.NOT_FOUND
    with pytest.raises(Forbidden):
        await ks.tokens.verify(nothing.principal, issued.token.token)


async def test_rotation_keeps_old_tokens_until_they_expire_then_drops_the_key(
    ks: Keystile, admin: Admin, clock: ManualClock
) -> None:
    _, _, plain = await key_of(admin)
    old = (await ks.tokens.issue(KeyCheck(plain), ttl_s=MAX_TTL_S)).token
    assert old is not None

    rotation = await ks.tokens.rotate(admin.actor)
    new = (await ks.tokens.issue(KeyCheck(plain))).token

    assert new is not None
    assert new.kid == rotation.kid != old.kid
    assert rotation.retired == (old.kid,)
    assert [k["kid"] for k in (await ks.tokens.jwks())["keys"]] == [new.kid, old.kid]
    assert [(s.key.kid, s.state) for s in await ks.tokens.signing_keys()] == [
        (new.kid, "current"),
        (old.kid, "retired"),
    ]
    assert (await ks.tokens.verify(OPERATOR, old.token)).code == Code.VALID
    [entry] = await admin.audit(AuditFilter(action="signing_key.rotate"))
    assert (entry.target, entry.changes["retired"]) == (new.kid, [old.kid])

    clock.advance(MAX_TTL_S)
    assert [k["kid"] for k in (await ks.tokens.jwks())["keys"]] == [new.kid]
    assert [s.state for s in await ks.tokens.signing_keys()] == ["current", "dropped"]
    # Even a token that claimed a later exp (none can: ttl <= the retirement window) fails once its key is gone.
    assert (await ks.tokens.verify(OPERATOR, old.token)).code == Code.NOT_FOUND


async def test_another_process_signs_with_the_rotated_key(
    ks: Keystile, admin: Admin, storage: SqlStorage, clock: ManualClock
) -> None:
    _, _, plain = await key_of(admin)
    other = Keystile.create(storage, Settings(database_url="memory://"), clock)
    other.vault.masters = ks.vault.masters
    first = (await other.tokens.issue(KeyCheck(plain))).token
    assert first is not None

    rotation = await ks.tokens.rotate(admin.actor)
    clock.advance(2)

    second = (await other.tokens.issue(KeyCheck(plain))).token
    assert second is not None
    assert second.kid == rotation.kid != first.kid
    assert (await ks.tokens.verify(OPERATOR, second.token)).code == Code.VALID


async def test_without_a_master_key_no_token_is_issued_and_nothing_is_spent(
    storage: SqlStorage, clock: ManualClock, admin: Admin
) -> None:
    _, key_id, plain = await key_of(admin, NewKey(credits=NewCredits(remaining=3)))
    bare = Keystile.create(storage, Settings(database_url="memory://"), clock)
    bare.vault.masters = MasterKeys(None)

    with pytest.raises(MasterKeyUnavailable):
        await bare.tokens.issue(KeyCheck(plain))

    key = await storage.get_key(key_id)
    assert key is not None
    assert key.credits is not None
    assert key.credits.remaining == 3
    assert (await bare.tokens.jwks())["keys"] == []
    assert (await bare.verification.verify(OPERATOR, KeyCheck(plain))).valid


async def test_the_private_signing_key_is_stored_sealed_only(ks: Keystile, admin: Admin, storage: SqlStorage) -> None:
    _, _, plain = await key_of(admin)
    assert (await ks.tokens.issue(KeyCheck(plain))).token is not None
    [stored] = await storage.list_signing_keys()
    private = ks.tokens._private[stored.kid]

    raw = private.private_bytes_raw()
    assert raw not in stored.ciphertext
    assert raw not in stored.nonce
    assert private.public_key().public_bytes_raw() == stored.public_key
    [created] = await admin.audit(AuditFilter(action="signing_key.create"))
    assert created.target == stored.kid


async def test_the_in_process_check_caches_until_exp_and_follows_the_key(
    ks: Keystile, admin: Admin, clock: ManualClock, storage: SqlStorage
) -> None:
    """TokenService.check (forward auth, the proxy, the local verifier): offline against the deployment's keys,
    cached until exp, the issuing key's state cached briefly and dropped at once when the key changes."""
    from keystile.core.commands import KeyUpdate

    api_id, key_id, plain = await key_of(admin, NewKey(owner_id="olga", permissions=["a.read", "a.write"]))
    issued = await ks.tokens.issue(KeyCheck(plain), ttl_s=60, permissions=["a.read"])
    assert issued.token is not None
    token = issued.token.token

    checked = await ks.tokens.check(token, api_id=api_id, permissions="a.read")
    assert checked.valid
    assert checked.grant is not None
    assert (checked.grant.key_id, checked.grant.owner_id, checked.grant.scope) == (key_id, "olga", ("a.read",))
    assert (await ks.tokens.check(token, permissions="a.write")).code == Code.INSUFFICIENT_PERMISSIONS
    assert (await ks.tokens.check(token, api_id="api_other")).code == Code.NOT_FOUND

    # Seen before: neither the signature nor storage is asked again (within the key state's TTL).
    reads = {"get_key": 0, "list_signing_keys": 0}
    real_get_key, real_list = storage.get_key, storage.list_signing_keys

    async def counting_get_key(key_id: str) -> object:
        reads["get_key"] += 1
        return await real_get_key(key_id)

    async def counting_list() -> object:
        reads["list_signing_keys"] += 1
        return await real_list()

    storage.get_key = counting_get_key  # type: ignore[method-assign,assignment]
    storage.list_signing_keys = counting_list  # type: ignore[method-assign,assignment]
    try:
        for _ in range(5):
            assert (await ks.tokens.check(token)).valid
        assert reads["get_key"] == 0

        # A change of the key reaches the check at once (the change bus), without waiting for the TTL.
        await ks.keys.update(admin.actor, key_id, KeyUpdate(enabled=False))
        assert (await ks.tokens.check(token)).code == Code.DISABLED
        await ks.keys.update(admin.actor, key_id, KeyUpdate(enabled=True))
        assert (await ks.tokens.check(token)).valid
        await ks.keys.revoke(admin.actor, key_id)
        assert (await ks.tokens.check(token)).code == Code.REVOKED

        # A flood of made-up kids and forgeries never reaches storage.
        before = dict(reads)
        claims = claims_of(token)
        for n in range(20):
            forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": f"sk_{n}"})
            assert (await ks.tokens.check(forged)).code == Code.NOT_FOUND
        assert (await ks.tokens.check("a.b.c")).code == Code.NOT_FOUND
        assert reads == before
    finally:
        storage.get_key = real_get_key  # type: ignore[method-assign]
        storage.list_signing_keys = real_list  # type: ignore[method-assign]

    clock.advance(60)
    assert (await ks.tokens.check(token)).code == Code.EXPIRED
