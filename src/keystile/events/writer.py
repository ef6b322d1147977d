"""The background writer of verification events (SPEC O1): batches from the recorder's buffer to storage.

Every flush interval, or as soon as a batch is full, the oldest buffered events are written in batches, each
through ONE storage call (:meth:`~keystile.core.ports.Storage.write_events`: events, rollups and ``last_used_at``
in one transaction). A batch that fails stays at the head of the buffer, already converted (same ids), and is
retried with a growing backoff; meanwhile new verifications keep being recorded until the buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from keystile.core import base62
from keystile.core.clock import Clock, now_ms
from keystile.core.ids import ID_LENGTH, accepted_request_id
from keystile.core.models import EventRow, VerificationEvent
from keystile.core.ports import Storage
from keystile.errors import Conflict, StorageError
from keystile.events.recorder import FIELDS, EventRecorder
from keystile.events.tally import VerificationTally

log = logging.getLogger("keystile.events")

BATCH_SIZE = 5_000
INTERVAL_S = 1.0
RETRY_S = 0.5
MAX_BACKOFF_S = 10.0
_MAX_TEXT = 128
_CONVERT_SLICE = 200
_MAX_LATENCY_US = 2**31 - 1


class EventStats:
    """The writer's counters since start, read at scrape time (``/metrics``): plain int attributes."""

    __slots__ = ("_recorder", "batches", "last_flush_ms", "rejected", "write_errors", "written")

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder
        self.written = 0
        """Events written to storage."""
        self.batches = 0
        """Batches written."""
        self.write_errors = 0
        """Batch writes that failed (and were kept for a retry)."""
        self.rejected = 0
        """Events discarded because storage refused their batch for a reason other than being unreachable (a
        bug): kept, they would block every later event."""
        self.last_flush_ms = 0
        """When a batch was last written (epoch ms), 0 before the first."""

    @property
    def buffered(self) -> int:
        """Events waiting to be written (a batch being retried included)."""
        return len(self._recorder)

    @property
    def dropped(self) -> int:
        """Events dropped because the buffer was full."""
        return self._recorder.dropped

    @property
    def capacity(self) -> int:
        return self._recorder.capacity


class EventIds:
    """``evt_`` ids as :func:`keystile.core.ids.new_id` makes them, but increasing within a millisecond too, so
    that events recorded in one millisecond list in the order they happened: the first id of a millisecond takes
    80 random bits, the next ones of the same millisecond add one (as monotonic ULIDs do; it also spares a
    ``getrandom`` system call per event, a sizeable share of the writer's work per event)."""

    def __init__(self) -> None:
        self._last = 0
        self._text = ""

    def __call__(self, at_ms: int) -> str:
        at_ms &= 0xFFFF_FFFF_FFFF
        last = self._last
        if at_ms == last >> 80:
            self._last = last + 1
            digit = last % 62
            if digit != 61:  # no carry: the previous id with its last digit moved up by one
                self._text = text = self._text[:-1] + base62.ALPHABET[digit + 1]
                return text
        else:
            self._last = (at_ms << 80) | secrets.randbits(80)
        self._text = text = "evt_" + base62.encode(self._last, ID_LENGTH)
        return text


def _tags(tags: Sequence[str]) -> str:
    """A request's tags as the JSON text storage keeps."""
    return json.dumps([_text(tag) or "" for tag in tags], ensure_ascii=False, separators=(",", ":"))


def _text(value: str | None) -> str | None:
    """A caller's string as storage can hold it: bounded, without U+0000, encodable as UTF-8."""
    if value is None:
        return None
    if len(value) > _MAX_TEXT:
        value = value[:_MAX_TEXT]
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        value = value.encode("utf-8", "replace").decode()
    return value


def event_rows(ids: EventIds, fields: Sequence[Any]) -> list[EventRow]:
    """Recorded verifications, given flat as :meth:`EventRecorder.fields` gives them, as the rows storage writes,
    in one loop (no event object on the way, no call per record but the id's: each cost as much as the rest of the
    conversion, bench/events_verify.py)."""
    accept_request_id = accepted_request_id
    rows: list[EventRow] = []
    append = rows.append
    for ts_s, latency_ns, code, key_api_id, key_id, owner_id, api_id, ip, tags, request_id in zip(
        *[iter(fields)] * FIELDS, strict=True
    ):
        ts = int(ts_s * 1000)
        event_id = ids(ts)
        api_id = key_api_id if key_api_id is not None else _text(api_id)
        if request_id is not None:
            request_id = accept_request_id(request_id)  # checked by the server already; kept as the last word
        if request_id is None:
            request_id = event_id
        if ip is not None and (len(ip) > _MAX_TEXT or not ip.isascii() or "\x00" in ip):
            ip = _text(ip)  # else stored as it is: the common case, without a call
        latency_us = latency_ns // 1000
        append((
            event_id, ts, request_id, api_id, key_id, owner_id, code, ip, _tags(tags) if tags else "[]",
            latency_us if latency_us < _MAX_LATENCY_US else _MAX_LATENCY_US,
        ))  # fmt: skip
    return rows


class EventWriter:
    """Writes what an :class:`EventRecorder` buffers; :meth:`start` runs it in the background, :meth:`flush`
    writes at once, :meth:`close` stops it after a last flush."""

    def __init__(
        self,
        storage: Storage,
        recorder: EventRecorder,
        clock: Clock,
        *,
        batch_size: int = BATCH_SIZE,
        interval_s: float = INTERVAL_S,
        retry_s: float = RETRY_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self._storage = storage
        self._recorder = recorder
        self._clock = clock
        self._batch = batch_size
        self._interval = interval_s
        self._retry = retry_s
        self._max_backoff = max_backoff_s
        self._ids = EventIds()
        self._held: list[EventRow] = []
        """The oldest buffered records converted to rows, when writing them failed: retried as they are."""
        self._tallied = 0
        """How many of the oldest buffered entries :attr:`tally` has counted (always those of a batch too)."""
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats = EventStats(recorder)
        self.tally = VerificationTally()
        """Recorded verifications by API and outcome, and their latencies (``/metrics``)."""

    # -- writing ------------------------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write every event buffered now, batch by batch; returns how many were written.

        Raises StorageError when a batch cannot be written: it stays buffered (with the rest) for the next try.
        """
        async with self._lock:
            written = 0
            remaining = len(self._recorder)
            while remaining > 0:
                count = await self._write_next()
                written += count
                remaining -= count
            return written

    async def write(self, events: Sequence[VerificationEvent]) -> None:
        """Write ready-made events as one batch, bypassing the buffer (bulk loads). Raises StorageError."""
        await self._storage.write_events(events)
        self.stats.written += len(events)
        self.stats.batches += 1

    def count_recorded(self) -> VerificationTally:
        """Count in :attr:`tally` the verifications recorded since the last call, and return it (a scrape calls
        this: the counts are then up to date even while storage is down and nothing is written)."""
        recorder = self._recorder
        if len(recorder) > self._tallied:
            self.tally.add(recorder.fields(self._tallied))
            self._tallied = len(recorder)
        return self.tally

    async def _count_up_to(self, count: int) -> None:
        """Count the oldest ``count`` records in :attr:`tally` if they are not yet, a slice at a time (a batch at
        once held the event loop for milliseconds: bench/loop_lag.py)."""
        recorder = self._recorder
        while self._tallied < count:
            stop = min(count, self._tallied + _CONVERT_SLICE)
            self.tally.add(recorder.fields(self._tallied, stop))
            self._tallied = stop
            if stop < count:
                await asyncio.sleep(0)

    async def _write_next(self) -> int:
        recorder = self._recorder
        rows = self._held
        size = len(rows) or min(len(recorder), self._batch)
        if not rows:
            await self._count_up_to(size)
            # Converted once: a retry sends the same ids, so a batch whose commit went unacknowledged is not
            # written twice (its ids clash instead). A slice at a time, letting requests in between: converting a
            # whole batch at once held the event loop for tens of milliseconds (p99 latency, bench/events_verify.py).
            rows = []
            for start in range(0, size, _CONVERT_SLICE):
                if start:
                    await asyncio.sleep(0)
                rows.extend(self._rows(recorder.fields(start, min(size, start + _CONVERT_SLICE))))
            self._held = rows
        stats = self.stats
        try:
            await self._storage.write_event_rows(rows)
        except Conflict:
            # The failed attempt had committed after all: the batch is written.
            log.info("a batch of %d verification events was already written", size)
            stats.written += size
            stats.batches += 1
        except StorageError:
            stats.write_errors += 1
            raise
        except Exception:
            stats.rejected += size
            log.exception("storage refused a batch of %d verification events; they are discarded", size)
        else:
            stats.written += size
            stats.batches += 1
            stats.last_flush_ms = now_ms(self._clock)
        recorder.remove_head(size)
        self._held = []
        self._tallied -= size
        return size

    def _rows(self, fields: Sequence[Any]) -> list[EventRow]:
        return event_rows(self._ids, fields)

    # -- in the background --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Write in the background: every interval, at once when a batch is full. Needs a running loop."""
        if self._task is None:
            self._stop.clear()
            self._recorder.wake = self._wake.set
            self._task = asyncio.get_running_loop().create_task(self._run(), name="keystile-event-writer")

    async def _stop_background(self) -> None:
        """End the background task (its pass under way finishes first) and stop being woken by the recorder."""
        if self._task is not None:
            self._stop.set()
            self._wake.set()
            await self._task
            self._task = None
            self._recorder.wake = _ignore

    async def close(self) -> None:
        """Stop the background writing, then write what is left. Events that cannot be written now (storage
        unreachable) are logged as lost."""
        await self._stop_background()
        try:
            await self.flush()
        except StorageError as exc:
            log.error("%d verification events could not be written at shutdown: %s", len(self._recorder), exc)

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                # Backing off: a full buffer must not hammer a database that is down.
                delay = min(self._retry * 2 ** (failures - 1), self._max_backoff)
                await _wait(self._stop, delay)
            else:
                await _wait(self._wake, self._interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                await self.flush()
            except StorageError as exc:
                failures += 1
                log.warning("writing verification events failed (%s); %d buffered, retrying", exc, len(self._recorder))
            except Exception:  # a bug must not end the writer for good
                failures += 1
                log.exception("the event writer failed")
            else:
                if failures:
                    log.info("verification events are being written again")
                failures = 0


def _ignore() -> None:
    return None


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
