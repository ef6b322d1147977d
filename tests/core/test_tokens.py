"""What a verified token grants (SPEC T3, I2): which credentials are tokens, the claims a grant needs, and its
scope through the permission query language."""

from __future__ import annotations

import pytest

from keystile.core.keys import generate
from keystile.core.tokens import MAX_TOKEN_LENGTH, TokenGrant, looks_like_token

CLAIMS = {
    "iss": "https://keys.example.com",
    "sub": "alice",
    "key_id": "key_1",
    "api_id": "api_1",
    "scope": "notes.read docs.*",
    "iat": 1_000,
    "exp": 1_900,
    "jti": "tok_1",
}


def test_a_token_has_a_jwts_shape_and_a_key_never_does() -> None:
    assert looks_like_token("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln-_")
    for key in (generate("ks"), generate("ks_root"), generate("acme_live")):
        assert not looks_like_token(key)
    for other in ("a.b", "a.b.c.d", "a..c", "a.b.c d", "a.b.c=", "", "x" * 10 + "." + "y" * MAX_TOKEN_LENGTH + ".z"):
        assert not looks_like_token(other)


def test_a_grant_carries_the_identity_and_its_scope_answers_permission_queries() -> None:
    grant = TokenGrant.from_claims(CLAIMS, "sk_1")
    assert grant is not None
    assert (grant.key_id, grant.api_id, grant.owner_id, grant.subject, grant.kid) == (
        "key_1",
        "api_1",
        "alice",
        "alice",
        "sk_1",
    )
    assert grant.scope == ("notes.read", "docs.*")
    assert grant.permitted("notes.read")
    assert grant.permitted("notes.read AND docs.write")
    assert not grant.permitted("notes.write")
    assert grant.permitted("notes.write OR docs.read")
    assert grant.memo == {
        "notes.read": True,
        "notes.read AND docs.write": True,
        "notes.write": False,
        "notes.write OR docs.read": True,
    }


def test_without_an_owner_sub_is_the_key_id_and_the_grant_has_no_owner() -> None:
    grant = TokenGrant.from_claims({**CLAIMS, "sub": "key_1"}, None)
    assert grant is not None
    assert (grant.owner_id, grant.subject) == (None, "key_1")


@pytest.mark.parametrize(
    "changed",
    [
        {"key_id": None},
        {"api_id": 7},
        {"scope": ["notes.read"]},
        {"iat": "1000"},
        {"exp": True},
        {"exp": 1.5},
        {"jti": 9},
    ],
)
def test_claims_of_the_wrong_type_make_no_grant(changed: dict[str, object]) -> None:
    claims = {**CLAIMS, **changed}
    claims = {name: value for name, value in claims.items() if value is not None}
    assert TokenGrant.from_claims(claims, None) is None
