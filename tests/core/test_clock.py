"""Clocks: the manual clock only moves when told to, and never backwards."""

from __future__ import annotations

import pytest

from keystile.core.clock import ManualClock, SystemClock, now_ms


def test_a_manual_clock_moves_both_clocks_together() -> None:
    clock = ManualClock(start=1_800_000_000.0)
    wall, mono = clock.now(), clock.monotonic()

    clock.advance(1.5)

    assert clock.now() == wall + 1.5
    assert clock.monotonic() == mono + 1.5


def test_a_manual_clock_does_not_go_back() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-0.001)


def test_now_ms_is_whole_milliseconds() -> None:
    assert now_ms(ManualClock(start=1_800_000_000.1239)) == 1_800_000_000_123


def test_the_system_clock_tells_the_time() -> None:
    clock = SystemClock()
    assert clock.now() > 1_700_000_000
    assert clock.monotonic() <= clock.monotonic()
