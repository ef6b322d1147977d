"""Verifications counted for ``/metrics`` from buffered records (SPEC O4): by the found key's API and outcome,
and latencies in cumulative histogram buckets whose bounds are inclusive, as Prometheus's ``le`` says."""

from __future__ import annotations

from typing import Any

from keystile.core.clock import ManualClock
from keystile.core.verify import NOT_FOUND
from keystile.events import EventRecorder, VerificationTally
from keystile.events.tally import LATENCY_BUCKETS_S


def record(latency_ns: int, result: Any = NOT_FOUND, api_id: str | None = "api_asked") -> list[Any]:
    """A record's fields as the recorder holds them, with an exact latency (the second field)."""
    recorder = EventRecorder(ManualClock(), 1)
    recorder.record(0, result, api_id, None, None, None)
    made = recorder.fields(0)
    return [made[0], latency_ns, *made[2:]]


def test_latencies_fall_in_the_first_bucket_whose_bound_they_do_not_exceed() -> None:
    tally = VerificationTally()

    tally.add([*record(10_000), *record(10_001), *record(999_999_999), *record(5_000_000_000)])

    buckets = dict(tally.cumulative_buckets())
    assert buckets["1e-05"] == 1  # exactly 10 µs is "le 10 µs"
    assert buckets["2.5e-05"] == 2
    assert buckets["1.0"] == 3
    assert buckets["+Inf"] == tally.latency_count == 4
    assert len(buckets) == len(LATENCY_BUCKETS_S) + 1
    assert tally.latency_sum_ns == 10_000 + 10_001 + 999_999_999 + 5_000_000_000


def test_a_key_not_found_counts_under_no_api_whatever_the_request_named() -> None:
    tally = VerificationTally()

    tally.add([field for n in range(100) for field in record(1, api_id=f"api_{n}")])

    assert tally.by_outcome == {("", "NOT_FOUND"): 100}
