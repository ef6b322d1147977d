"""Timing helpers shared by the benchmarks: timeit-style loops, repeated, summarised by min and median.

The machines these run on are shared and noisy, so every benchmark measures its own baseline in the same run
and reports ratios. The ratios use the minimum of the repeats (as :mod:`timeit` recommends: noise only ever adds
time, so the fastest repeat is the best estimate of what the code itself costs); the median is printed beside it
to show how noisy the run was.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timing:
    """Nanoseconds per call over ``repeats`` samples of ``calls`` calls each."""

    name: str
    calls: int
    samples_ns: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.samples_ns)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ns)

    def line(self) -> str:
        samples = f"{self.calls:,} calls x {len(self.samples_ns)}"
        return f"{self.name:<44} {self.best:>10,.0f} ns/call (median {self.median:,.0f}; {samples})"


def measure(name: str, one_pass: Callable[[], None], calls_per_pass: int, *, passes: int, repeats: int) -> Timing:
    """Time ``one_pass`` (which makes ``calls_per_pass`` calls) ``passes`` times per sample, ``repeats`` samples.

    The garbage collector is off while a sample runs, as in :mod:`timeit`; it runs between samples.
    """
    one_pass()  # warm up: first-call costs (lazy imports, caches) are not what we measure
    samples = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in range(passes):
                one_pass()
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        samples.append(elapsed / (passes * calls_per_pass))
    return Timing(name, passes * calls_per_pass, tuple(samples))


async def measure_async(
    name: str, one_pass: Callable[[], Awaitable[None]], calls_per_pass: int, *, passes: int, repeats: int
) -> Timing:
    """:func:`measure` for a coroutine function, awaited inside the running event loop."""
    await one_pass()
    samples = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in range(passes):
                await one_pass()
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        samples.append(elapsed / (passes * calls_per_pass))
    return Timing(name, passes * calls_per_pass, tuple(samples))
