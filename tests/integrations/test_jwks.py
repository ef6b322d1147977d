"""How long the integrations keep a server's key set: its ``Cache-Control`` (the fetching itself, the refetch on
an unknown ``kid`` and its rate limit run against a real server in tests/e2e/test_token_integrations.py)."""

from __future__ import annotations

from keystile.integrations._tokens import max_age_of


def test_the_jwks_cache_reads_max_age_from_cache_control() -> None:
    assert max_age_of("public, max-age=300", 60.0) == 300.0
    assert max_age_of("max-age=0", 60.0) == 0.0
    assert max_age_of("public, s-maxage=5", 60.0) == 60.0  # not max-age
    assert max_age_of("no-cache", 60.0) == 0.0
    assert max_age_of("private, no-store, max-age=300", 60.0) == 0.0
    assert max_age_of(None, 60.0) == 60.0
    assert max_age_of("public", 60.0) == 60.0
