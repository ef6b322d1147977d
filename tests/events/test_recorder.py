"""The event buffer a verification appends to (SPEC O1): bounded, O(1), never raises, counts what it drops."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystile.core.clock import ManualClock
from keystile.core.verify import NOT_FOUND
from keystile.events import EventRecorder
from keystile.events.recorder import FIELDS


def records(fields: list[Any]) -> list[tuple[Any, ...]]:
    """The records of a flat run of fields, as tuples."""
    return list(zip(*[iter(fields)] * FIELDS, strict=True))


def test_a_full_buffer_drops_new_events_and_counts_them_keeping_the_oldest(clock: ManualClock) -> None:
    recorder = EventRecorder(clock, 3)

    for i in range(5):
        recorder.record(0, NOT_FOUND, None, None, None, f"req_{i}")

    assert len(recorder) == 3
    assert recorder.dropped == 2
    assert [entry[-1] for entry in records(recorder.fields(0))] == ["req_0", "req_1", "req_2"]


def test_recording_makes_nothing_the_garbage_collector_tracks(clock: ManualClock) -> None:
    # A tracked object per request filled the collector's young generation every ~700 requests, and each young
    # collection held the event loop (the tail latency of a busy server, SPEC P2).
    recorder = EventRecorder(clock, 10_000)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for i in range(5_000):
            recorder.record(0, NOT_FOUND, "api_asked", "203.0.113.9", None, f"req_{i}")
        made = gc.get_count()[0] - before
    finally:
        if was_enabled:
            gc.enable()
    assert len(recorder) == 5_000
    assert made < 50  # none a record (the list's growth aside)


def test_recording_never_raises_whatever_the_request_carried(clock: ManualClock) -> None:
    recorder = EventRecorder(clock, 2)
    odd = "\x00\ud800" + "x" * 10_000
    for _ in range(4):  # into the buffer, then past its end
        recorder.record(-1, NOT_FOUND, odd, odd, [odd] * 1000, odd)
    assert (len(recorder), recorder.dropped) == (2, 2)


def test_the_writer_is_woken_once_when_a_batch_is_ready(clock: ManualClock) -> None:
    recorder = EventRecorder(clock, 100, wake_size=3)
    wakes: list[int] = []
    recorder.wake = lambda: wakes.append(len(recorder))

    for _ in range(7):
        recorder.record(0, NOT_FOUND, None, None, None, None)

    assert wakes == [3]


def test_the_wake_mark_moves_to_a_batch_of_new_events_never_behind_the_buffer(clock: ManualClock) -> None:
    recorder = EventRecorder(clock, 100, wake_size=3)
    wakes: list[int] = []
    recorder.wake = lambda: wakes.append(len(recorder))
    for _ in range(4):
        recorder.record(0, NOT_FOUND, None, None, None, None)
    recorder.wake_at(4 + 3)  # the process writer holds 4: wake when 3 more wait
    for _ in range(3):
        recorder.record(0, NOT_FOUND, None, None, None, None)
    recorder.remove_head(5)
    recorder.wake_at(1)  # behind the buffer (2 events): the next event wakes, not a never-reached mark
    recorder.record(0, NOT_FOUND, None, None, None, None)
    assert wakes == [3, 7, 3]


def test_a_buffer_holds_at_least_one_event(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="at least one"):
        EventRecorder(clock, 0)


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 12),
    wake_size=st.integers(0, 6),
    steps=st.lists(st.one_of(st.just(-1), st.integers(0, 8)), max_size=80),
)
def test_the_buffer_behaves_as_a_bounded_queue_whatever_is_recorded_and_removed(
    capacity: int, wake_size: int, steps: list[int]
) -> None:
    # -1 records one verification; n >= 0 removes the n oldest (at most what is there), as the writers do.
    recorder = EventRecorder(ManualClock(), capacity, wake_size=wake_size)
    wakes: list[int] = []
    recorder.wake = lambda: wakes.append(len(recorder))
    model: list[str] = []
    dropped = expected_wakes = made = 0
    for step in steps:
        if step < 0:
            made += 1
            recorder.record(0, NOT_FOUND, None, None, None, f"req_{made}")
            if len(model) < capacity:
                model.append(f"req_{made}")
                expected_wakes += len(model) == wake_size
            else:
                dropped += 1
        else:
            count = min(step, len(model))
            recorder.remove_head(count)
            del model[:count]
        assert len(recorder) == len(model)
        assert [entry[-1] for entry in records(recorder.fields(0))] == model
        assert [entry[-1] for entry in records(recorder.fields(1, 3))] == model[1:3]
    assert recorder.dropped == dropped
    assert len(wakes) == expected_wakes  # each time the buffer grows to wake_size events
