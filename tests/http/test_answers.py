"""What a verification result means over HTTP (keystile.http.answers), as units: the shells (forward auth, the
proxy, the integrations) show it on the wire in their own tests."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from keystile.core.models import Api, Credits, Key, KeyBundle, RateLimit, Refill
from keystile.core.ratelimit import Bucket, LimitState, MemoryRateLimiter
from keystile.core.verify import ALL_CODES, CachedKey, Code
from keystile.http.answers import (
    NO_REFILL_RETRY_S,
    STATUS,
    identity_headers,
    owner_header,
    ratelimit_headers,
    retry_after_s,
    room_after_ms,
)

NOW_MS = datetime(2030, 5, 1, 8, 0, tzinfo=UTC).timestamp() * 1000
MINUTE_MS = 60_000


def _entry(
    *, owner_id: str | None = None, ratelimits: tuple[RateLimit, ...] = (), refill: Refill | None = None
) -> CachedKey:
    api = Api(id="api_1", name="api", prefix="ks", created_at=0, updated_at=0)
    credits = Credits(id="cr_1", remaining=0, refill=refill)
    key = Key(
        id="key_1",
        api_id=api.id,
        digest=b"d" * 32,
        start="ks_abc",
        created_at=0,
        updated_at=0,
        owner_id=owner_id,
        ratelimits=ratelimits,
        credits=credits,
    )
    return CachedKey(KeyBundle(key, api, {}), fresh_until=math.inf)


def _exhausted(limit: int, duration_ms: int) -> tuple[MemoryRateLimiter, Bucket, tuple[LimitState, ...]]:
    """A real bucket emptied at NOW_MS, and the states the refused request after that reports."""
    limiter = MemoryRateLimiter()
    bucket = Bucket("k:key_1:api", "api", limit, duration_ms)
    for _ in range(limit):
        assert limiter.apply([bucket], NOW_MS).allowed
    refused = limiter.apply([bucket], NOW_MS)
    assert not refused.allowed
    return limiter, bucket, refused.states


def test_every_verification_code_has_the_status_of_spec_v5() -> None:
    assert set(STATUS) == set(ALL_CODES), "a new code must get a status here, not a KeyError in a shell"
    assert {code: STATUS[code] for code in ALL_CODES} == {
        "NOT_FOUND": 401,
        "REVOKED": 401,
        "DISABLED": 401,
        "EXPIRED": 401,
        "FORBIDDEN": 403,
        "INSUFFICIENT_PERMISSIONS": 403,
        "RATE_LIMITED": 429,
        "USAGE_EXCEEDED": 429,
        "VALID": 200,
    }


@pytest.mark.parametrize(
    ("limit", "duration_ms", "expected_s"), [(10, MINUTE_MS, 6), (2, 10_000, 5), (1, MINUTE_MS, 60)]
)
def test_retry_after_a_rate_limit_is_when_the_bucket_has_room_for_one_more_request(
    limit: int, duration_ms: int, expected_s: int
) -> None:
    limiter, bucket, states = _exhausted(limit, duration_ms)
    entry = _entry(ratelimits=(RateLimit("api", limit, duration_ms),))

    retry = retry_after_s(Code.RATE_LIMITED, entry, states, NOW_MS)

    assert retry == expected_s
    assert not limiter.apply([bucket], NOW_MS + (retry - 1) * 1000).allowed, "a second earlier is still too soon"
    assert limiter.apply([bucket], NOW_MS + retry * 1000).allowed


def test_retry_after_counts_down_and_never_says_zero() -> None:
    _, _, states = _exhausted(10, MINUTE_MS)
    entry = _entry(ratelimits=(RateLimit("api", 10, MINUTE_MS),))

    assert retry_after_s(Code.RATE_LIMITED, entry, states, NOW_MS + 5_000) == 1
    assert retry_after_s(Code.RATE_LIMITED, entry, states, NOW_MS + 30_000) == 1  # room already: still a number


def test_the_slowest_of_several_exhausted_limits_decides() -> None:
    fast = LimitState("burst", 10, 0, NOW_MS + 10_000)  # room again in 1 s
    slow = LimitState("hourly", 4, 0, NOW_MS + 3_600_000)  # room again in 15 min
    spare = LimitState("daily", 100, 50, NOW_MS + 1_000)  # not exhausted: no wait
    limits = {
        "burst": (RateLimit("burst", 10, 10_000), "k:burst"),
        "hourly": (RateLimit("hourly", 4, 3_600_000), "k:hourly"),
    }
    assert room_after_ms([fast, slow, spare], NOW_MS, limits) == 900_000


def test_without_the_limits_durations_the_wait_is_never_too_short() -> None:
    # What the integrations know from a VerifyResponse: no durations, so (reset - now) / limit, the longest
    # one interval can be, which is exact when the bucket was just emptied.
    limiter, bucket, states = _exhausted(10, MINUTE_MS)
    assert room_after_ms(states, NOW_MS, {}) == pytest.approx(6_000, abs=1)
    later = NOW_MS + 2_500
    wait = room_after_ms(limiter.apply([bucket], later).states, later, {})
    assert wait >= 3_500
    assert limiter.apply([bucket], later + wait).allowed


@pytest.mark.parametrize(
    ("refill", "expected_s"),
    [
        (Refill(5, "daily"), 16 * 3600),  # at midnight UTC; the clock says 08:00
        (Refill(5, "monthly", day=3), 86_400 + 16 * 3600),  # May 3rd, 00:00
        (None, NO_REFILL_RETRY_S),
    ],
)
def test_retry_after_out_of_credits_is_the_next_refill_or_a_minute(refill: Refill | None, expected_s: int) -> None:
    assert retry_after_s(Code.USAGE_EXCEEDED, _entry(refill=refill), (), NOW_MS) == expected_s


def test_ratelimit_headers_report_the_tightest_limit_with_reset_in_seconds() -> None:
    roomy = LimitState("daily", 1000, 900, NOW_MS + 8_640_000)
    tight = LimitState("burst", 10, 2, NOW_MS + 7_200.5)
    assert ratelimit_headers([roomy, tight], NOW_MS) == [
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-remaining", b"2"),
        (b"ratelimit-reset", b"8"),
    ]
    tie = LimitState("other", 5, 2, NOW_MS + 30_000)
    assert ratelimit_headers([tight, tie], NOW_MS)[2] == (b"ratelimit-reset", b"30"), "the later reset wins a tie"
    assert ratelimit_headers([], NOW_MS) == []


def test_identity_headers_name_the_key_its_api_and_its_owner() -> None:
    assert identity_headers(_entry(owner_id="user_42")) == [
        (b"x-keystile-key-id", b"key_1"),
        (b"x-keystile-api-id", b"api_1"),
        (b"x-keystile-owner-id", b"user_42"),
    ]
    assert identity_headers(_entry())[2] == (b"x-keystile-owner-id", b""), "always there, empty without an owner"


@pytest.mark.parametrize(
    ("owner", "value"),
    [
        ("jürgen 50%", b"j%C3%BCrgen 50%25"),
        ("line\r\nX-Keystile-Key-Id: forged", b"line%0D%0AX-Keystile-Key-Id: forged"),
        ("日本", b"%E6%97%A5%E6%9C%AC"),
        ("a/b?c=d&e", b"a/b?c=d&e"),
    ],
)
def test_owner_ids_are_ascii_on_one_line_and_lose_nothing(owner: str, value: bytes) -> None:
    assert owner_header(owner) == value
