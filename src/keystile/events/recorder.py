"""The hot path's side of verification events (SPEC O1): a bounded buffer that a verification appends to.

Recording appends one tuple to a list and never waits: no id, no formatting, no I/O. The tuple holds what the
verification already has (its code and key's ids, the request's ``api_id``, ``ip`` and ``tags``, the caller's
request id);
the writer turns it into a :class:`~keystile.core.models.VerificationEvent` later, off the hot path. The key
itself is never held.

The buffer holds events until they are written, those of a batch being written included, so its capacity bounds
everything not yet in the database: when it is full a new event is dropped and counted, and nothing that fitted is
ever lost while the process lives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from time import perf_counter_ns
from typing import Any

from keystile.core.clock import Clock
from keystile.core.verify import VerifyResult

Record = tuple[
    float, int, str, str | None, str | None, str | None, str | None, str | None, Sequence[str] | None, str | None
]
"""``(ts seconds, latency ns, code, the key's api_id, key_id and owner_id (None when not found), requested api_id,
ip, tags, request id)``, as recorded: strings and numbers only, so that the collector stops tracking a record
the first time it looks at it (a record holding the result would be tracked until written, and a busy server's
buffer would make every collection long: SPEC P2's tail latency, bench/loop_lag.py)."""


def _nothing() -> None:
    return None


class EventRecorder:
    """A bounded buffer of verifications waiting to be written."""

    __slots__ = ("_buffer", "_capacity", "_now", "_wake_size", "dropped", "wake")

    def __init__(self, clock: Clock, capacity: int, *, wake_size: int = 0) -> None:
        if capacity < 1:
            raise ValueError("an event buffer holds at least one event")
        self._buffer: list[Any] = []
        self._capacity = capacity
        self._now = clock.now
        self._wake_size = wake_size - 1
        self.dropped = 0
        """Events dropped because the buffer was full, since start."""
        self.wake: Callable[[], None] = _nothing
        """Called once when the buffer reaches ``wake_size`` events: a batch is ready (the writer sets it)."""

    @property
    def capacity(self) -> int:
        return self._capacity

    def wake_at(self, size: int) -> None:
        """Call :attr:`wake` when the buffer next reaches ``size`` events (a writer whose events leave the buffer
        a few at a time moves the mark, so that it is woken once a batch of NEW events is waiting)."""
        self._wake_size = max(size, len(self._buffer) + 1) - 1

    def record(
        self,
        started_ns: int,
        result: VerifyResult,
        api_id: str | None,
        ip: str | None,
        tags: Sequence[str] | None,
        request_id: str | None,
    ) -> None:
        """Record a verification that began at ``started_ns`` (``time.perf_counter_ns``) and gave ``result``:
        O(1), never raises, never waits. ``api_id``, ``ip`` and ``tags`` are the request's."""
        buffer = self._buffer
        size = len(buffer)
        if size < self._capacity:
            if tags and type(tags) is not tuple:
                tags = tuple(tags)  # a list would keep the record tracked by the collector
            entry = result.entry
            if entry is None:
                buffer.append((
                    self._now(), perf_counter_ns() - started_ns, result.code, None, None, None, api_id, ip, tags,
                    request_id,
                ))  # fmt: skip
            else:
                buffer.append((
                    self._now(), perf_counter_ns() - started_ns, result.code, entry.api_id, entry.key_id,
                    entry.owner_id, api_id, ip, tags, request_id,
                ))  # fmt: skip
            if size == self._wake_size:
                self.wake()
        else:
            self.dropped += 1

    def __len__(self) -> int:
        return len(self._buffer)

    # -- the writer's side: the oldest events stay in the buffer until they are written -------------------------

    def head(self, count: int) -> list[Any]:
        """The ``count`` oldest entries (records, or events the writer put back with :meth:`replace_head`)."""
        return self._buffer[:count]

    def tail(self, start: int, stop: int | None = None) -> list[Any]:
        """The entries from the ``start``-th oldest on, up to the ``stop``-th (the writer counts the new ones for
        ``/metrics``)."""
        return self._buffer[start:stop]

    def replace_head(self, items: Sequence[Any]) -> None:
        """Put ``items`` in place of as many oldest entries (the writer's converted events, kept for a retry)."""
        self._buffer[: len(items)] = items

    def remove_head(self, count: int) -> None:
        """Forget the ``count`` oldest entries: they are written."""
        del self._buffer[:count]
