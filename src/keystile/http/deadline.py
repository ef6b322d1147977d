"""A deadline for request bodies: a client that sends its headers and then its body slowly, or never, holds one of
the server's requests (granian admits a bounded number at a time per worker) until the deadline, and no longer.

The HTTP server times out reading headers, not bodies. A timer per request would cost every verification a few
microseconds whether or not its body is late (``asyncio.timeout`` measured 7 us a request here), so nothing is
armed per request: every ``interval`` a sweep looks at the event loop's tasks, finds those waiting inside
:func:`keystile.http.asgi.read_body` (their coroutines' await chain passes through it), and cancels those it has
seen waiting there for ``timeout_s`` or more. ``read_body`` turns that cancellation into a 408 ``body_timeout``
problem. A body is thus cut off between ``timeout_s`` and ``timeout_s + interval`` after the request began
waiting for it; one that arrives in time costs nothing.

One deadline per event loop (a server worker has one loop and one app): the first app started on a loop starts
it, the others share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from keystile.http.asgi import BODY_TIMED_OUT, read_body

log = logging.getLogger("keystile.server")

READING = frozenset({read_body.__code__})
"""The code of the functions inside which a request waits for its body."""
MAX_INTERVAL_S = 1.0
MAX_DEPTH = 64
"""How deep an await chain is followed (a request's is about ten deep)."""

_DEADLINES: dict[asyncio.AbstractEventLoop, BodyDeadline] = {}


class BodyDeadline:
    """Cancels the requests of this event loop that have waited for their body for ``timeout_s`` or more."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.interval_s = min(MAX_INTERVAL_S, timeout_s / 2)
        self._waiting: dict[asyncio.Task[Any], float] = {}  # since when (loop time) each was seen waiting
        self._task: asyncio.Task[None] | None = None
        self.cut = 0
        """Requests cut off since start."""

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="keystile-body-deadline")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._waiting.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sweep(loop.time())
            except Exception:  # a bug must not end the deadline for good
                log.exception("the request body deadline failed")

    def sweep(self, now: float) -> int:
        """Cancel the requests seen waiting for their body since ``timeout_s`` ago or before; returns how many."""
        waiting: dict[asyncio.Task[Any], float] = {}
        cut = 0
        for task in asyncio.all_tasks():
            if task is self._task or task.done() or not reading_body(task):
                continue
            since = self._waiting.get(task, now)
            if now - since >= self.timeout_s and task.cancel():
                BODY_TIMED_OUT[task] = self.timeout_s
                cut += 1
            else:
                waiting[task] = since
        self._waiting = waiting
        self.cut += cut
        return cut


def reading_body(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is suspended inside :func:`~keystile.http.asgi.read_body`."""
    awaited: Any = task.get_coro()
    for _ in range(MAX_DEPTH):
        code = getattr(awaited, "cr_code", None)
        if code is None:
            return False
        if code in READING:
            return True
        awaited = awaited.cr_await
    return False


def start_body_deadline(timeout_s: float) -> BodyDeadline:
    """The body deadline of the running event loop, started with ``timeout_s`` unless it runs already (a shorter
    ``timeout_s`` then applies from now on)."""
    loop = asyncio.get_running_loop()
    deadline = _DEADLINES.get(loop)
    if deadline is None or not deadline.running:
        deadline = _DEADLINES[loop] = BodyDeadline(timeout_s)
        deadline.start()
    elif timeout_s < deadline.timeout_s:
        deadline.timeout_s = timeout_s
        deadline.interval_s = min(deadline.interval_s, timeout_s / 2)
    return deadline


async def stop_body_deadline(deadline: BodyDeadline) -> None:
    """Stop ``deadline`` (at the end of the app that started it)."""
    loop = asyncio.get_running_loop()
    if _DEADLINES.get(loop) is deadline:
        del _DEADLINES[loop]
    await deadline.close()
