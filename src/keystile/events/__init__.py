"""Verification events (SPEC O1, O3): recorded on the hot path, written off it, kept for a set retention.

===============================  ==============================================================================
:class:`EventRecorder`           the bounded buffer a verification appends to (O(1), never waits, counts drops)
:class:`EventWriter`             writes the buffer in batches, in the background; retries with backoff
:class:`ProcessEventWriter`      the same, but a child process converts and writes (``keystile serve``)
:class:`Retention`               removes raw events and rollups past their retention, hourly
:class:`VerificationTally`       recorded verifications by API and outcome, and their latencies (``/metrics``)
:class:`Events`                  the three together, as :class:`~keystile.service.Keystile` wires them
===============================  ==============================================================================

See ``docs/operations.md`` (Verification events) for the design and its guarantees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keystile.core.clock import Clock
from keystile.core.models import VerificationEvent
from keystile.core.ports import Pruned, Storage
from keystile.events.process import ProcessEventWriter
from keystile.events.recorder import EventRecorder
from keystile.events.retention import Retention
from keystile.events.tally import VerificationTally
from keystile.events.writer import BATCH_SIZE, EventStats, EventWriter


@dataclass(frozen=True, slots=True)
class WriterProcess:
    """Where a child process writes the events (:class:`ProcessEventWriter`): the database ``url`` this process
    uses (never ``memory://``), its round-trip deadline, and the child's log level."""

    url: str
    timeout_s: float
    log_level: str = "info"


class Events:
    """The verification events of one :class:`~keystile.service.Keystile`.

    With ``process``, a child process converts and writes the batches (:class:`ProcessEventWriter`, servers);
    else this process does, on its event loop. ``recorder`` is ``None`` when events are off
    (``KEYSTILE_EVENTS=off``): nothing is recorded, and ``stats`` stay at zero. Created idle: :meth:`start` runs
    the writer (and retention) in the background; without it, :meth:`flush` writes what is buffered (tests,
    one-shot commands: :meth:`close` flushes too).
    """

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        enabled: bool = True,
        capacity: int = 100_000,
        batch_size: int = BATCH_SIZE,
        interval_s: float = 1.0,
        raw_days: int = 30,
        rollup_days: int = 400,
        process: WriterProcess | None = None,
    ) -> None:
        recorder = EventRecorder(clock, capacity, wake_size=batch_size)
        self.recorder: EventRecorder | None = recorder if enabled else None
        self.writer: EventWriter
        if process is not None and enabled:
            self.writer = ProcessEventWriter(
                storage,
                recorder,
                clock,
                url=process.url,
                timeout_s=process.timeout_s,
                log_level=process.log_level,
                batch_size=batch_size,
                interval_s=interval_s,
            )
        else:
            self.writer = EventWriter(storage, recorder, clock, batch_size=batch_size, interval_s=interval_s)
        self.retention = Retention(storage, clock, raw_days=raw_days, rollup_days=rollup_days)

    @property
    def enabled(self) -> bool:
        return self.recorder is not None

    @property
    def stats(self) -> EventStats:
        """Counters for ``/metrics``: ``buffered``, ``capacity``, ``written``, ``dropped``, ``write_errors``,
        ``rejected``, ``batches``, ``last_flush_ms``."""
        return self.writer.stats

    def count_verifications(self) -> VerificationTally:
        """The recorded verifications by API and outcome and their latencies, counted up to now (``/metrics``;
        empty while events are off, since nothing is recorded)."""
        return self.writer.count_recorded()

    def start(self, *, retention: bool = True) -> None:
        """Start writing in the background (when events are on) and, with ``retention``, the hourly retention
        passes (the first one now). Needs a running event loop."""
        if self.recorder is not None:
            self.writer.start()
        if retention:
            self.retention.start()

    async def flush(self) -> int:
        """Write everything buffered now; returns how many events were written. Raises StorageError (the events
        stay buffered)."""
        return await self.writer.flush()

    async def write(self, events: Sequence[VerificationEvent]) -> None:
        """Write ready-made events as one batch through the same storage call as the writer (bulk loads): they
        count in rollups and ``last_used_at`` as recorded ones do. Raises StorageError."""
        await self.writer.write(events)

    async def prune(self) -> Pruned:
        """One retention pass now. Raises StorageError."""
        return await self.retention.run_once()

    async def close(self) -> None:
        """Stop retention and the writer, writing what is still buffered (a clean shutdown loses nothing)."""
        await self.retention.close()
        await self.writer.close()


__all__ = [
    "EventRecorder",
    "EventStats",
    "EventWriter",
    "Events",
    "ProcessEventWriter",
    "Retention",
    "VerificationTally",
    "WriterProcess",
]
