"""The hot path's side of verification events (SPEC O1): a bounded buffer that a verification appends to.

Recording appends a record's fields to one flat list and never waits: no id, no formatting, no I/O. A record holds
what the verification already has (its code and key's ids, the request's ``api_id``, ``ip`` and ``tags``, the
caller's request id); the writer turns it into a row later, off the hot path. The key itself is never held.

Flat, not a tuple per record: the fields are strings and numbers, which the garbage collector does not track, so
recording allocates nothing it tracks and a busy server makes no young collections at all (a tuple per request
made one every ~700 requests, each holding the event loop for 0.1-2 ms: SPEC P2's tail latency, bench/README.md).

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
ip, tags, request id)``: a record's fields, in the order the buffer holds them (tags as a tuple: a list would be
tracked by the collector)."""
FIELDS = 10
"""Fields of a record, one after the other in the buffer."""


def _nothing() -> None:
    return None


class EventRecorder:
    """A bounded buffer of verifications waiting to be written."""

    __slots__ = ("_buffer", "_capacity", "_end", "_head", "_now", "_wake_size", "dropped", "wake")

    def __init__(self, clock: Clock, capacity: int, *, wake_size: int = 0) -> None:
        if capacity < 1:
            raise ValueError("an event buffer holds at least one event")
        self._buffer: list[Any] = []
        """Every record's fields, oldest first, :data:`FIELDS` items a record, from :attr:`_head` on."""
        self._head = 0
        """Where the oldest record not yet written starts: those before it are written, and dropped from the list
        only once they outnumber the rest (dropping a list's head moves all the rest: at every acknowledgement of
        a busy writer process, milliseconds of the event loop, bench/loop_lag.py)."""
        self._capacity = capacity
        self._end = capacity * FIELDS
        """The list's length at which the buffer is full."""
        self._now = clock.now
        self._wake_size = (wake_size - 1) * FIELDS
        """The list's length at which recording calls :attr:`wake`."""
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
        self._wake_size = self._head + (max(size, len(self) + 1) - 1) * FIELDS

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
        if size < self._end:
            if tags and type(tags) is not tuple:
                tags = tuple(tags)  # a list would be tracked by the collector
            entry = result.entry
            # The tuple of fields is freed at once: the collector's count of young objects is back where it was.
            if entry is None:
                buffer += (
                    self._now(), perf_counter_ns() - started_ns, result.code, None, None, None, api_id, ip, tags,
                    request_id,
                )  # fmt: skip
            else:
                buffer += (
                    self._now(), perf_counter_ns() - started_ns, result.code, entry.api_id, entry.key_id,
                    entry.owner_id, api_id, ip, tags, request_id,
                )  # fmt: skip
            if size == self._wake_size:
                self.wake()
        else:
            self.dropped += 1

    def __len__(self) -> int:
        """How many records the buffer holds."""
        return (len(self._buffer) - self._head) // FIELDS

    # -- the writer's side: the oldest events stay in the buffer until they are written -------------------------

    def fields(self, start: int, stop: int | None = None) -> list[Any]:
        """The fields of the records from the ``start``-th oldest on, up to the ``stop``-th, flat (as the buffer
        holds them: what the writer process is sent, and what the tally counts without making a tuple each)."""
        head = self._head
        return self._buffer[head + start * FIELDS : None if stop is None else head + stop * FIELDS]

    def remove_head(self, count: int) -> None:
        """Forget the ``count`` oldest records: they are written."""
        buffer = self._buffer
        old = self._head
        head = min(old + count * FIELDS, len(buffer))
        if head > len(buffer) - head:  # more written than not: drop them, moving fewer than were written
            del buffer[:head]
            head = 0
        # The full mark and the wake mark stay where they were from the oldest record on.
        self._end += head - old
        self._wake_size += head - old
        self._head = head
