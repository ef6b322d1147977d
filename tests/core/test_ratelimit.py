"""SPEC L1 on the pure core: GCRA with a manual clock (no sleeps), window edges and costs above 1."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystile.core.clock import ManualClock
from keystile.core.ratelimit import Bucket, MemoryRateLimiter, decide, refund, state, step


def now_ms(clock: ManualClock) -> float:
    return clock.now() * 1000


def allowed(limiter: MemoryRateLimiter, clock: ManualClock, *buckets: Bucket) -> bool:
    return limiter.apply(buckets, now_ms(clock)).allowed


@pytest.mark.parametrize(("limit", "duration_ms"), [(1, 1000), (3, 1000), (50, 10_000), (7, 60_000), (1000, 1)])
def test_an_idle_key_gets_exactly_the_limit_at_once_and_not_one_more(limit: int, duration_ms: int) -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    bucket = Bucket("k", "api", limit, duration_ms)
    results = [allowed(limiter, clock, bucket) for _ in range(limit + 5)]
    assert results == [True] * limit + [False] * 5


def test_capacity_returns_at_the_limit_per_duration_not_all_at_a_window_edge() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    bucket = Bucket("k", "api", 10, 1000)  # one request every 100 ms once the burst is spent
    assert sum(allowed(limiter, clock, bucket) for _ in range(10)) == 10
    clock.advance(0.099)
    assert not allowed(limiter, clock, bucket), "99 ms later no capacity has come back yet"
    clock.advance(0.001)
    assert allowed(limiter, clock, bucket), "at 100 ms exactly one request's capacity is back"
    assert not allowed(limiter, clock, bucket)
    clock.advance(0.5)
    assert sum(allowed(limiter, clock, bucket) for _ in range(10)) == 5


def test_no_boundary_lets_twice_the_limit_through() -> None:
    # Fixed windows admit 2N around a boundary (N at its end, N at the next start). GCRA never admits more than
    # N plus what the elapsed time has given back, wherever the requests fall.
    clock, limiter = ManualClock(), MemoryRateLimiter()
    bucket = Bucket("k", "api", 100, 1000)
    clock.advance(0.999)
    first = sum(allowed(limiter, clock, bucket) for _ in range(100))
    clock.advance(0.002)
    second = sum(allowed(limiter, clock, bucket) for _ in range(100))
    assert first == 100
    assert second == 0, "2 ms later only 0.2 of a request's capacity has returned"


def test_an_idle_bucket_fills_back_up_to_the_limit_and_no_further() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    bucket = Bucket("k", "api", 5, 1000)
    assert sum(allowed(limiter, clock, bucket) for _ in range(5)) == 5
    clock.advance(3600)
    assert sum(allowed(limiter, clock, bucket) for _ in range(20)) == 5


def test_a_cost_above_one_takes_that_many_units() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    heavy = Bucket("k", "api", 10, 1000, cost=4)
    assert [allowed(limiter, clock, heavy) for _ in range(3)] == [True, True, False]
    light = Bucket("k", "api", 10, 1000, cost=2)
    assert allowed(limiter, clock, light), "the 2 units left are still usable by a cheaper request"
    assert not allowed(limiter, clock, Bucket("k", "api", 10, 1000, cost=1))


def test_a_cost_larger_than_the_limit_is_never_allowed() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    assert not allowed(limiter, clock, Bucket("k", "api", 3, 1000, cost=4))
    assert limiter.peek(Bucket("k", "api", 3, 1000), now_ms(clock)).remaining == 3, "a refusal spends nothing"


def test_a_cost_of_zero_reports_without_spending() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    bucket = Bucket("k", "api", 3, 1000)
    allowed(limiter, clock, bucket)
    decision = limiter.apply([Bucket("k", "api", 3, 1000, cost=0)], now_ms(clock))
    assert decision.allowed
    assert decision.states[0].remaining == 2


def test_several_limits_are_all_or_nothing() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    per_second = Bucket("k:s", "second", 5, 1000)
    per_minute = Bucket("k:m", "minute", 7, 60_000)
    assert sum(allowed(limiter, clock, per_second, per_minute) for _ in range(10)) == 5
    clock.advance(1)
    assert sum(allowed(limiter, clock, per_second, per_minute) for _ in range(10)) == 2
    # The refusals spent nothing on the per-second bucket: it is full again a second later.
    clock.advance(1)
    assert limiter.peek(per_second, now_ms(clock)).remaining == 5


def test_states_report_remaining_and_when_the_bucket_is_full_again() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    bucket = Bucket("k", "api", 4, 1000)
    start = now_ms(clock)
    decision = limiter.apply([bucket], start)
    assert decision.states[0].remaining == 3
    assert decision.states[0].reset_at == pytest.approx(start + 250)
    for _ in range(3):
        decision = limiter.apply([bucket], start)
    refused = limiter.apply([bucket], start)
    assert not refused.allowed
    assert refused.states[0].remaining == 0
    assert refused.states[0].reset_at == pytest.approx(start + 1000)
    assert refused.retry_after_ms == pytest.approx(250)


def test_refund_gives_back_what_a_refused_request_spent() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter()
    bucket = Bucket("k", "api", 2, 1000)
    allowed(limiter, clock, bucket)
    limiter.refund([bucket], now_ms(clock))
    assert limiter.peek(bucket, now_ms(clock)).remaining == 2
    assert refund(1_000, 1_000, bucket) == 1_000, "never below now"


def test_the_limiter_forgets_full_buckets_when_it_grows_past_its_bound() -> None:
    clock, limiter = ManualClock(), MemoryRateLimiter(max_buckets=10)
    for i in range(10):
        allowed(limiter, clock, Bucket(f"k{i}", "api", 5, 1000))
    clock.advance(2)  # every bucket is full again, so none carries state
    allowed(limiter, clock, Bucket("fresh", "api", 5, 1000))
    assert len(limiter) == 1


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 50),
    duration_ms=st.integers(1, 100_000),
    gaps=st.lists(st.tuples(st.integers(0, 5_000_000), st.integers(0, 5)), max_size=60),
)
def test_admitted_cost_never_exceeds_the_limit_plus_what_elapsed_time_gave_back(
    limit: int, duration_ms: int, gaps: list[tuple[int, int]]
) -> None:
    # GCRA's guarantee: between any two admitted requests t_i <= t_j, the admitted cost is at most
    # N + N * (t_j - t_i) / D (a full bucket, plus what came back in between). Times here are microseconds.
    now, tat = 0, None
    admitted: list[tuple[int, int]] = []
    for gap, cost in gaps:
        now += gap
        bucket = Bucket("k", "api", limit, duration_ms, cost)
        ok, new_tat = step(tat, now, bucket)
        if ok:
            tat = new_tat
            admitted.append((now, cost))
        assert 0 <= state(tat, now, bucket).remaining <= limit
    for i, (start, _) in enumerate(admitted):
        total = 0
        for at, cost in admitted[i:]:
            total += cost
            assert total <= limit + limit * (at - start) / (duration_ms * 1000) + 1e-9


def test_decide_leaves_tats_untouched_when_refused() -> None:
    buckets = [Bucket("a", "a", 1, 1000), Bucket("b", "b", 5, 1000)]
    first = decide([None, None], 0, buckets)
    second = decide(list(first.tats), 0, buckets)
    assert first.allowed
    assert not second.allowed
    assert second.tats == first.tats
