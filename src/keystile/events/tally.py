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
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

from keystile.events.recorder import FIELDS

LATENCY_BUCKETS_S = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
"""Upper bounds of the latency histogram's buckets: a verification from the cache takes microseconds, one that
reads storage milliseconds."""
_BOUNDS_NS = tuple(round(bound * 1e9) for bound in LATENCY_BUCKETS_S)
_bucket = partial(bisect_left, _BOUNDS_NS)
_LATENCY, _CODE, _API = 1, 2, 3
"""Where a record's latency, code and the found key's api_id (None when not found) are among its fields."""


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

    def add(self, fields: Sequence[Any]) -> None:
        """Count records given as :meth:`~keystile.events.recorder.EventRecorder.fields` gives them: flat.

        In C loops (slices, ``map``, ``Counter``) by API and outcome, instead of a Python loop over every record
        (bench/events_verify.py)."""
        latencies = fields[_LATENCY::FIELDS]
        buckets = self.latency_buckets
        for index, count in Counter(map(_bucket, latencies)).items():
            buckets[index] += count
        by_outcome = self.by_outcome
        for (api_id, code), count in Counter(zip(fields[_API::FIELDS], fields[_CODE::FIELDS], strict=True)).items():
            label = (api_id or "", code)
            by_outcome[label] = by_outcome.get(label, 0) + count
        self.latency_count += len(latencies)
        self.latency_sum_ns += sum(latencies)

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """``(le, verifications at or below it)`` for every bound and ``+Inf``, as Prometheus histograms say."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(repr, LATENCY_BUCKETS_S), "+Inf"), self.latency_buckets, strict=True):
            running += count
            out.append((bound, running))
        return out
