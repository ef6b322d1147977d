"""The event writer process (SPEC O1, P2, P6): ``python -m keystile.cli.eventwriter``, started by a server.

A server that runs its event writer in a process of its own (``KEYSTILE_EVENTS_WRITER=process``, the default of
``keystile serve``) only records verifications and hands their records over, a batch at a time, through this
process's standard input; converting them to rows and writing them (events, rollups, ``last_used_at``) happens
here, on another core and under another interpreter lock, so the serving event loop never does that work.

The protocol, both ways frames of a 4-byte big-endian length and a :mod:`marshal` payload:

* in: first ``{"url": …, "timeout_s": …, "batch": …}`` (the database, the largest batch), then ``(seq, fields)``
  frames (the records' fields, flat, as the server's buffer holds them), ``(seq, None)`` to finish (write what
  is left, then exit);
* out: ``("ok", seq, written, rejected, at_ms, last)`` for each frame once its batch is written (or discarded as a
  bug's; ``last``: the batch's last frame), ``("error", seq, text)`` each time writing a batch failed (it is
  retried with a growing backoff, in order).

The frames that have arrived while a batch was being written are written together, up to ``batch`` events, in
one transaction. A batch is converted once, so a retry sends the same event ids (a commit that was not
acknowledged is not written twice). When the server goes away (its end of the pipe closes) the process writes what
it holds and exits; it ignores SIGINT and SIGTERM, which a terminal or a service manager sends the whole process
group at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import os
import signal
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any

from keystile.core.models import EventRow
from keystile.core.ports import Storage
from keystile.errors import Conflict, StorageError
from keystile.events.recorder import FIELDS
from keystile.events.writer import EventIds, event_rows

log = logging.getLogger("keystile.events")

Opener = Callable[[str, float], Awaitable[Storage]]
"""Opens the storage at a URL with a round-trip deadline in seconds (``keystile.storage.open_storage``)."""
_LENGTH = struct.Struct(">I")
MAX_FRAME = 1 << 30
NICENESS = 10
"""Below the server's priority: on a busy machine the CPU goes to answering requests first; writing catches up in
the gaps (the buffer holds what waits)."""
RETRY_S = 0.5
MAX_BACKOFF_S = 10.0


def frame(payload: Any) -> bytes:
    """``payload`` as one frame: its length, then its :mod:`marshal` bytes."""
    data = marshal.dumps(payload)
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's payload; raises :class:`asyncio.IncompleteReadError` at the end of the stream."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_FRAME:
        raise ValueError("an event frame larger than 1 GiB")
    # Only ever between a server and the child it started, over their private pipes.
    return marshal.loads(await reader.readexactly(length))  # noqa: S302


class _Writer:
    """Writes the batches it is given, in order, each until it is written; reports on ``out``."""

    def __init__(self, storage: Storage, out: IO[bytes]) -> None:
        self._storage = storage
        self._out = out
        self._ids = EventIds()

    async def write(self, frames: Sequence[tuple[int, Sequence[Any]]], *, stopping: asyncio.Event) -> None:
        """Write the records of ``frames`` as one batch (one transaction), then acknowledge each frame."""
        rows: list[EventRow] = []
        for _, fields in frames:
            rows += event_rows(self._ids, fields)  # the in-process writer's conversion
        failures = 0
        while True:
            try:
                await self._storage.write_event_rows(rows)
            except Conflict:
                log.info("a batch of %d verification events was already written", len(rows))
            except StorageError as exc:
                failures += 1
                _say(self._out, "error", frames[0][0], str(exc))
                if stopping.is_set() and failures > 1:
                    log.error("%d verification events could not be written at shutdown: %s", len(rows), exc)
                    return
                await asyncio.sleep(min(RETRY_S * 2 ** (failures - 1), MAX_BACKOFF_S))
                continue
            except Exception:
                log.exception("storage refused a batch of %d verification events; they are discarded", len(rows))
                self._acknowledge(frames, written=False)
                return
            if failures:
                log.info("verification events are being written again")
            self._acknowledge(frames, written=True)
            return

    def _acknowledge(self, frames: Sequence[tuple[int, Sequence[Any]]], *, written: bool) -> None:
        """Say ``("ok", seq, written, rejected, at_ms, last frame of the batch)`` for each frame."""
        at_ms = int(time.time() * 1000)
        with contextlib.suppress(OSError):  # the server went away: nobody to tell
            for index, (seq, fields) in enumerate(frames):
                count = len(fields) // FIELDS
                last = index == len(frames) - 1
                self._out.write(frame(("ok", seq, count if written else 0, 0 if written else count, at_ms, last)))
            self._out.flush()


def _say(out: IO[bytes], *message: Any) -> None:
    try:
        out.write(frame(message))
        out.flush()
    except OSError:  # the server went away: nobody to tell
        pass


async def _open(
    config: dict[str, Any], out: IO[bytes], stopping: asyncio.Event, open_storage: Opener
) -> Storage | None:
    """The storage at ``config["url"]``, retried with a growing backoff while the database cannot be reached;
    ``None`` when the server has gone away and it still cannot be reached."""
    failures = 0
    while True:
        try:
            return await open_storage(config["url"], config["timeout_s"])
        except StorageError as exc:
            failures += 1
            _say(out, "error", 0, str(exc))
            if stopping.is_set() and failures > 1:
                return None
            await asyncio.sleep(min(RETRY_S * 2 ** (failures - 1), MAX_BACKOFF_S))


async def _serve(reader: asyncio.StreamReader, out: IO[bytes], open_storage: Opener) -> None:
    config = await read_frame(reader)
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    stopping = asyncio.Event()

    async def receive() -> None:
        try:
            while True:
                seq, fields = await read_frame(reader)
                if fields is None:
                    break
                queue.put_nowait((seq, fields))
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("the server went away; writing the verification events received")
        stopping.set()
        queue.put_nowait((-1, None))

    receiving = asyncio.create_task(receive())
    storage = await _open(config, out, stopping, open_storage)
    if storage is None:
        receiving.cancel()
        log.error("%d batches of verification events could not be written: the database is unreachable", queue.qsize())
        return
    writer = _Writer(storage, out)
    batch_size = int(config.get("batch", 5000))
    try:
        done = False
        while not done:
            # What has arrived meanwhile, up to a batch: the server sends small frames (so that encoding one never
            # holds its event loop long), written here as one transaction.
            frames: list[tuple[int, Any]] = []
            size = 0
            while not frames or (size < batch_size and not queue.empty()):
                seq, fields = await queue.get()
                if fields is None:
                    done = True
                    break
                frames.append((seq, fields))
                size += len(fields) // FIELDS
            if frames:
                await writer.write(frames, stopping=stopping)
    finally:
        receiving.cancel()
        await storage.close()


def run(open_storage: Opener) -> None:
    """Be the event writer process: read this process's standard input, write to the storage ``open_storage``
    opens, report on its standard output, until the server closes the pipe (the entry point configures logging
    and passes the opener: :mod:`keystile.cli.eventwriter`)."""
    # Ctrl-C in a terminal (SIGINT) and a service manager's stop (SIGTERM) reach the whole process group: this
    # process ends when its server closes the pipe, after writing what it holds, not before.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_FRAME)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        await _serve(reader, out, open_storage)

    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(serve())
