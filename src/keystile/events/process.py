"""The event writer in a process of its own (SPEC O1, P2, P6): the serving process only hands records over.

In-process, converting and writing a busy server's events costs about as much of the event loop as answering the
verifications did (the slowest requests wait behind it: bench/tail_latency.py), and the two cores of a small
machine serve one interpreter lock. :class:`ProcessEventWriter` keeps everything the in-process
:class:`~keystile.events.writer.EventWriter` promises — the same bounded buffer, counts for ``/metrics``,
:meth:`flush`, a clean shutdown that loses nothing — but a batch's records are sent, as they are, to a child
process (:mod:`keystile.events.child`, run by ``python -m keystile.cli.eventwriter``) that converts and writes
them. Records stay in the buffer until the child says they are written, so if it dies they are sent again to the
one that replaces it (a batch whose commit was not acknowledged may then be written twice, with other ids: a
crash's only cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections import deque

from keystile.core.clock import Clock
from keystile.core.ports import Storage
from keystile.errors import StorageError
from keystile.events.child import frame, read_frame
from keystile.events.recorder import EventRecorder
from keystile.events.writer import BATCH_SIZE, INTERVAL_S, EventWriter, _wait

log = logging.getLogger("keystile.events")

RESPAWN_S = 1.0
"""The least time between two starts of the child process."""
SHUTDOWN_S = 30.0
"""How long a clean shutdown waits for the child to write what it holds."""
FRAME_EVENTS = 200
"""Events encoded and sent at a time at most, letting requests in between (the child writes what has arrived in
batches)."""
SQLITE_FRAME_EVENTS = 100
"""With SQLite, frames of this many leave as soon as they fill, one at a time between requests, and the child
writes each as it comes (those that arrived meanwhile together). A batch's worth sent at once and written in one
transaction (5,000 events, ~35 ms of the child's work) doubled the p99 of verifications under load; 1,000 at a time
did as badly, 200 less, 100 least (bench/README.md). With PostgreSQL a transaction costs round trips and a
commit's flush to disk, and 100 at a time lost nearly a fifth of the throughput: there a batch's worth waits (or
the interval)."""


def _cadence(url: str, batch_size: int) -> tuple[int, int]:
    """``(events per frame at most, new events that wake the sender)`` for the database at ``url``."""
    if url.lower().startswith("sqlite:"):
        return SQLITE_FRAME_EVENTS, SQLITE_FRAME_EVENTS
    return FRAME_EVENTS, batch_size


class ProcessEventWriter(EventWriter):
    """Writes what an :class:`EventRecorder` buffers through a child process writing to the database at ``url``."""

    def __init__(
        self,
        storage: Storage,
        recorder: EventRecorder,
        clock: Clock,
        *,
        url: str,
        timeout_s: float,
        log_level: str = "info",
        batch_size: int = BATCH_SIZE,
        interval_s: float = INTERVAL_S,
    ) -> None:
        super().__init__(storage, recorder, clock, batch_size=batch_size, interval_s=interval_s)
        self._frame, self._wake_every = _cadence(url, batch_size)
        recorder.wake_at(self._wake_every)
        self._config = {"url": url, "timeout_s": timeout_s, "batch": batch_size}
        self._log_level = log_level
        self._proc: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None
        self._started_at = -RESPAWN_S
        self._seq = 0
        self._sent = 0
        """How many of the oldest buffered records are with the child (sent, not yet acknowledged)."""
        self._batches: deque[tuple[int, int]] = deque()
        """``(seq, records)`` of every batch sent and not acknowledged, oldest first."""
        self._acked = 0
        """Records the child has acknowledged since start."""
        self._last_error = ""
        self._changed = asyncio.Event()
        """Set whenever the child reports (or exits): :meth:`flush` waits on it."""

    @property
    def pid(self) -> int | None:
        """The child process's id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    # -- the child ----------------------------------------------------------------------------------------------

    async def _ensure_child(self) -> asyncio.subprocess.Process:
        if self._proc is not None:
            return self._proc
        loop = asyncio.get_running_loop()
        wait = self._started_at + RESPAWN_S - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._started_at = loop.time()
        env = {**os.environ, "KEYSTILE_LOG_LEVEL": self._log_level}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "keystile.cli.eventwriter",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise StorageError(f"cannot start the event writer process: {exc}") from exc
        assert proc.stdin is not None
        proc.stdin.write(frame(self._config))
        self._proc = proc
        self._reading = asyncio.get_running_loop().create_task(self._read(proc), name="keystile-event-acks")
        return proc

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """Take the child's reports until it exits; then forget it, so that what it held is sent again."""
        assert proc.stdout is not None
        recorder, stats, batches = self._recorder, self.stats, self._batches
        try:
            while True:
                message = await read_frame(proc.stdout)
                if message[0] == "ok":
                    _, seq, written, rejected, at_ms, last = message
                    sent_seq, count = batches.popleft()
                    if sent_seq != seq:  # never: the child answers in order
                        raise RuntimeError(f"event batch {seq} acknowledged, {sent_seq} expected")
                    recorder.remove_head(count)
                    self._sent -= count
                    recorder.wake_at(self._sent + self._wake_every)
                    self._tallied -= count
                    self._acked += count
                    stats.rejected += rejected
                    if written:
                        stats.written += written
                        stats.batches += last
                        stats.last_flush_ms = at_ms
                else:
                    stats.write_errors += 1
                    self._last_error = str(message[2])
                    log.warning(
                        "writing verification events failed (%s); %d buffered, retrying", message[2], len(recorder)
                    )
                self._changed.set()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, EOFError, TypeError, RuntimeError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                log.error("the event writer process answered something unexpected (%s)", type(exc).__name__)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        code = await proc.wait()
        if self._proc is proc:
            self._proc = None
            if batches:
                log.warning(
                    "the event writer process exited (status %s) holding %d unwritten events: they are sent again",
                    code,
                    self._sent,
                )
            batches.clear()
            self._sent = 0
        self._changed.set()

    async def _send_all(self) -> None:
        """Send every record buffered now that the child does not hold, a frame's worth at most per frame
        (not those recorded meanwhile: chasing them sent a frame of a few events per request)."""
        recorder = self._recorder
        until = self._acked + len(recorder)  # counted from start, as acknowledgements move the buffer's head
        while self._acked + self._sent < until:
            proc = await self._ensure_child()
            size = min(until - self._acked - self._sent, self._batch, self._frame)
            await self._count_up_to(self._sent + size)  # counted for /metrics before they leave
            if self._proc is not proc:
                continue
            start = self._sent
            self._seq += 1
            data = frame((self._seq, recorder.fields(start, start + size)))
            self._batches.append((self._seq, size))
            self._sent = start + size
            assert proc.stdin is not None
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError):
                pass  # the child is gone: _read forgets it, and the loop starts another
            recorder.wake_at(self._sent + self._wake_every)  # when new events wait: not at every ack
            await asyncio.sleep(0)  # one frame at a time between requests

    # -- writing ------------------------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Send every event buffered now and wait until the child has written them; returns how many.

        Raises StorageError when the child reports a failed write meanwhile (it keeps the batch and retries) or
        exits: the events stay buffered."""
        async with self._lock:
            count = len(self._recorder)
            target = self._acked + count
            errors = self.stats.write_errors
            await self._send_all()
            while self._acked < target:
                self._changed.clear()
                if self.stats.write_errors != errors:
                    raise StorageError(self._last_error or "the event writer process could not write")
                if self._proc is None:
                    raise StorageError("the event writer process exited before writing the events")
                await self._changed.wait()
            return count

    # -- in the background --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            await _wait(self._wake, self._interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                async with self._lock:
                    await self._send_all()
            except StorageError as exc:
                log.warning("%s; %d verification events buffered, retrying", exc, len(self._recorder))
            except Exception:  # a bug must not end the writer for good
                log.exception("the event writer failed")

    async def close(self) -> None:
        """Stop sending, hand the child what is left, and wait (up to :data:`SHUTDOWN_S`) for it to write it and
        exit. Events it could not write are logged as lost."""
        await self._stop_background()
        async with self._lock:
            if len(self._recorder) or self._proc is not None:
                with contextlib.suppress(StorageError):
                    await self._send_all()
            proc = self._proc
            if proc is not None and proc.stdin is not None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    proc.stdin.write(frame((self._seq + 1, None)))
                    await proc.stdin.drain()
                    proc.stdin.close()
                try:
                    async with asyncio.timeout(SHUTDOWN_S):
                        await proc.wait()
                except TimeoutError:
                    log.error("the event writer process did not finish in %.0f s; stopped", SHUTDOWN_S)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if self._reading is not None:
                await self._reading
                self._reading = None
            if len(self._recorder):
                log.error("%d verification events could not be written at shutdown", len(self._recorder))
