"""Verifications counted for ``/metrics`` (SPEC O4) from the records in the event buffer, off the hot path.

A verification pays for recording its event and for nothing else: the counts by API and outcome and the latency
histogram are made by the event writer as it goes over the buffer (before it writes a batch, and at each
scrape), from what every record already holds. So they cover the verifications that were recorded; those dropped
because the buffer was full are counted apart (``keystile_events_dropped_total``), without their outcome.

Labels stay bounded: the API is the found key's (a request's ``api_id`` is caller input, and would let anyone
make new series), so verifications whose key was not found count under the API ``""``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

LATENCY_BUCKETS_S = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
"""Upper bounds of the latency histogram's buckets: a verification from the cache takes microseconds, one that
reads storage milliseconds."""
_BOUNDS_NS = tuple(round(bound * 1e9) for bound in LATENCY_BUCKETS_S)


class VerificationTally:
    """Counts of recorded verifications: by ``(api_id, outcome)``, and their latencies in histogram buckets."""

    __slots__ = ("by_outcome", "latency_buckets", "latency_count", "latency_sum_ns")

    def __init__(self) -> None:
        self.by_outcome: dict[tuple[str, str], int] = {}
        """Verifications by ``(api_id, outcome)``; ``api_id`` is ``""`` when the key was not found."""
        self.latency_buckets = [0] * (len(_BOUNDS_NS) + 1)
        """Verifications per latency bucket (not cumulative); the last one is above the highest bound."""
        self.latency_count = 0
        self.latency_sum_ns = 0

    def add(self, records: Iterable[Any]) -> None:
        """Count records as :class:`~keystile.events.recorder.EventRecorder` makes them."""
        by_outcome = self.by_outcome
        buckets = self.latency_buckets
        count = total_ns = 0
        for record in records:
            latency_ns = record[1]
            result = record[2]
            entry = result.entry
            label = (entry.key.api_id if entry is not None else "", result.code)
            by_outcome[label] = by_outcome.get(label, 0) + 1
            buckets[bisect_left(_BOUNDS_NS, latency_ns)] += 1
            count += 1
            total_ns += latency_ns
        self.latency_count += count
        self.latency_sum_ns += total_ns

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """``(le, verifications at or below it)`` for every bound and ``+Inf``, as Prometheus histograms say."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(repr, LATENCY_BUCKETS_S), "+Inf"), self.latency_buckets, strict=True):
            running += count
            out.append((bound, running))
        return out
