"""The circuit breaker: one trial per backoff, never every caller waiting on a dead backend."""

from __future__ import annotations

from keystile.core.breaker import Breaker
from keystile.core.clock import ManualClock


def test_a_closed_breaker_admits_every_call() -> None:
    breaker = Breaker(ManualClock())
    assert all(breaker.admit() for _ in range(10))
    assert not breaker.down


def test_after_a_failure_calls_are_refused_until_the_backoff_is_over() -> None:
    clock = ManualClock()
    breaker = Breaker(clock, first_backoff_s=0.1, max_backoff_s=1.0)
    breaker.failed()
    assert not breaker.admit()
    assert round(breaker.wait_s(), 6) == 0.1
    clock.advance(0.1)
    assert breaker.admit(), "the trial"
    assert not breaker.admit(), "one trial at a time: the others are refused while it runs"
    breaker.succeeded()
    assert breaker.admit()
    assert breaker.admit()


def test_failed_trials_double_the_backoff_up_to_the_ceiling() -> None:
    clock = ManualClock()
    breaker = Breaker(clock, first_backoff_s=0.1, max_backoff_s=0.3)
    breaker.failed()
    waits = []
    for _ in range(4):
        clock.advance(breaker.wait_s())
        assert breaker.admit()
        breaker.failed()
        waits.append(round(breaker.wait_s(), 6))
    assert waits == [0.2, 0.3, 0.3, 0.3]
    assert breaker.failures == 5
    clock.advance(0.3)
    assert breaker.admit()
    breaker.succeeded()
    breaker.failed()
    assert round(breaker.wait_s(), 6) == 0.1, "a success starts the backoff over"


def test_an_abandoned_trial_lets_the_next_one_go() -> None:
    clock = ManualClock()
    breaker = Breaker(clock)
    breaker.failed()
    clock.advance(1)
    assert breaker.admit()
    breaker.abandoned()
    assert breaker.admit()
