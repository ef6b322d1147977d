"""One Redis connection per process (SPEC L2): keys under a prefix, Lua scripts by EVALSHA, round trips shared.

One Redis call from asyncio costs more than a whole cached verification, so concurrent calls share round trips:
a call made while another round trip is in flight waits for it to end and then goes out with every other call
queued meanwhile, in one write. Verifications go further (:meth:`RedisConnection.submit_part`): those of a batch
are parts of ONE call of a batching script, alike parts sent once with their number, so that Redis parses and
sets up one script call per batch and a busy key is read and written once per batch. A script the server does
not know (a restarted or flushed Redis) is loaded and the calls that needed it are sent again, in one more round
trip.

Everything goes over a connection of this package's own (:mod:`keystile.redis.wire`): an asyncio protocol that
writes a batch packed beforehand in one ``transport.write`` and hands the replies to their callers' futures
straight from ``data_received`` once the batch is in, parsed by hiredis. (redis-py's client costs several times
more per call, which the hot path would feel: see ``bench/redis_client.py`` and ``docs/dependencies.md``; only
the change bus's subscription uses it.)

Failures (SPEC L2: fail open or closed, recover by itself). Every wait on Redis has a deadline, ``timeout_s``
(``KEYSTILE_REDIS_TIMEOUT_MS``): opening a connection, handshake included, and each batch written. A failure fails
every call in flight or waiting with :class:`RedisUnavailable` (no driver exception leaves this package) and opens
the circuit breaker of :mod:`keystile.redis.recovery`: calls then fail at once until a probe finds Redis back.

Late calls: a batch given up on at its deadline may still reach Redis afterwards (TCP delivers what was sent once
a partition heals or a frozen server wakes up), when its callers have already done without it (spent credits in
the database, say). So every script call carries, as its last argument, its deadline on Redis's own clock, and the
scripts do nothing past it (they answer ``LATE``). Redis's clock is read (``TIME``) as each connection opens and
every :data:`CLOCK_SAMPLE_S` after; the offset errs early, so a call is never acted on after its caller gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis

from keystile.core.clock import Clock
from keystile.errors import StorageError
from keystile.redis.recovery import Recovery
from keystile.redis.scripts import Script, pack
from keystile.redis.wire import (
    TIME,
    Arg,
    Endpoint,
    Group,
    Part,
    WireProtocol,
    batches,
    clock_offset,
    combine,
    command,
)

__all__ = ["RedisConnection", "RedisUnavailable"]

# A Redis that does not answer within this long counts as down (KEYSTILE_REDIS_TIMEOUT_MS).
DEFAULT_TIMEOUT_S = 0.25
# How often Redis's clock is read again (the deadlines of script calls are on it): unsynchronised clocks drift
# apart by a few milliseconds a minute at most, and the offset errs early.
CLOCK_SAMPLE_S = 60.0
# The most parts in one batched script call: a call of Redis blocks it for every part's work.
MAX_PARTS = 256
# Batches written and not answered yet. One: a call made meanwhile waits for the batch in flight and goes out
# with the next, which then gathers more calls (measured: more batches in flight only cost more CPU on both sides).
IN_FLIGHT = 1
PING = command(b"PING")
DOWN = "Redis is unavailable; it is tried again in the background"


class RedisUnavailable(StorageError):
    """Redis could not be reached, timed out, or failed a command; the driver's exception is the ``__cause__``."""

    code = "redis_unavailable"
    title = "Redis unavailable"


# A command on its way: its packed bytes, the future of its caller or the futures of the parts of a batched script
# call (see RedisConnection.submit_part), and its script, if it is a script call (then its last argument, its
# deadline, is added as it is written); no future and a script: that script's SCRIPT LOAD.
_Call = tuple[bytes, "asyncio.Future[Any] | list[asyncio.Future[Any]] | None", Script | None]


class _Batch:
    """Calls written together; their replies come back in their order."""

    __slots__ = ("calls", "retrying", "sent_at")

    def __init__(self, calls: list[_Call], sent_at: float, retrying: bool) -> None:
        self.calls = calls
        self.sent_at = sent_at
        self.retrying = retrying  # it sends calls again that found their script missing: no third chance


class RedisConnection:
    """A client for ``url`` (``redis://`` or ``rediss://``) whose keys all start with ``prefix``, waiting at most
    ``timeout_s`` for anything.

    Counters (since start): ``round_trips`` (writes of a batch), ``calls`` (script calls and parts; more than
    round trips when batched), ``errors`` (failed round trips and failed script calls).
    """

    def __init__(self, url: str, prefix: str, clock: Clock, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.prefix = prefix
        self.url = url
        self.clock = clock
        self.timeout_s = timeout_s
        self.recovery = Recovery(clock, self._reopen)
        self.breaker = self.recovery.breaker  # read by every call: an attribute, not a property
        self._endpoint = Endpoint(url)
        self._queue: list[_Call] = []
        self._parts: dict[Script, dict[Part, Group]] = {}
        self._inflight: deque[_Batch] = deque()  # written, oldest first
        self._replies: list[Any] = []  # the replies to the oldest batch in flight so far
        self._protocol: WireProtocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._flush_soon: asyncio.Handle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._offset_us = 0  # Redis's clock minus the loop's (microseconds), as last read
        self._sample_at = 0.0  # when (loop time) to read Redis's clock again
        self._closed = False
        self.round_trips = self.calls = self.errors = 0

    def key(self, name: str) -> str:
        return self.prefix + name

    @property
    def stats(self) -> dict[str, int]:
        return {"round_trips": self.round_trips, "calls": self.calls, "errors": self.errors}

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script, in one round trip with the other calls made meanwhile; returns its reply.

        Raises :class:`RedisUnavailable` when Redis fails, or at once while the breaker is open.
        """
        return await self.submit(script, pack(script, keys, args))

    def submit(self, script: Script, packed: bytes) -> asyncio.Future[Any]:
        """Queue a script call packed by :func:`pack` (the hot path packs ahead of time); await the future for
        its reply.

        Raises :class:`RedisUnavailable` at once while the breaker is open; the future raises it when Redis fails.
        """
        return self._enqueue(packed, script)

    def execute(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue a command packed by :func:`command` (not a script call); await the future for its reply.

        Raises :class:`RedisUnavailable` at once while the breaker is open; the future raises it when Redis fails
        or refuses the command.
        """
        return self._enqueue(packed, None)

    def _enqueue(self, packed: bytes, script: Script | None) -> asyncio.Future[Any]:
        if self.breaker.down:
            raise RedisUnavailable(DOWN)
        loop = self._loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((packed, future, script))
        if script is not None:
            self.calls += 1
        if self._flush_soon is None and len(self._inflight) < IN_FLIGHT:
            # Not at once: every call made until the loop comes round again goes out in the same write.
            self._flush_soon = loop.call_soon(self._flush)
        return future

    def submit_part(self, script: Script, part: Part) -> asyncio.Future[Any]:
        """Queue one part of a call of a batching script: the parts queued until the batch goes out make one
        call. Alike parts (equal: verifications of one busy key) make a group, sent once: the script's KEYS are
        each group's keys in turn, its ARGV each group's number of parts then arguments, and its reply the list of
        every part's reply, group after group. Await the future for this part's reply.

        Raises :class:`RedisUnavailable` at once while the breaker is open; the future raises it when Redis fails.
        """
        if self.breaker.down:
            raise RedisUnavailable(DOWN)
        loop = self._loop()
        future: asyncio.Future[Any] = loop.create_future()
        groups = self._parts.get(script)
        if groups is None:
            groups = self._parts[script] = {}
        group = groups.get(part)  # bytes cache their hash: a cached key's prepacked part hashes fast
        if group is None:
            groups[part] = Group(part, [future])
        else:
            group.futures.append(future)
        self.calls += 1
        if self._flush_soon is None and len(self._inflight) < IN_FLIGHT:
            self._flush_soon = loop.call_soon(self._flush)
        return future

    async def ping(self) -> None:
        """Raise :class:`RedisUnavailable` unless Redis answers within the deadline: a PING, or a probe while the
        breaker is open (one that answers closes it)."""
        if self.breaker.down:
            if not await self.probe():
                raise RedisUnavailable("Redis unreachable")
            return
        await self.execute(PING)

    async def publish(self, channel: str, payload: bytes) -> None:
        """Publish on a channel (not prefixed here); raises :class:`RedisUnavailable`, at once while the breaker
        is open."""
        await self.execute(command(b"PUBLISH", channel.encode(), payload))

    async def probe(self) -> bool:
        """Whether Redis answers: while the breaker is open, a new connection, its handshake and a ``TIME``,
        within the deadline; when they are answered, the calls use that connection from then on and the breaker
        closes. True at once while the breaker is closed. Concurrent probes share one."""
        return await self.recovery.probe()

    async def close(self) -> None:
        """Let the calls made so far finish (each within ``timeout_s``), then stop probing and close."""
        self._closed = True
        await self.recovery.close()
        await asyncio.gather(*self._pending(), return_exceptions=True)
        if self._connecting is not None:
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.transport.close()

    def _take_queue(self) -> list[_Call]:
        calls, self._queue = self._queue, []
        if self._parts:
            for script, groups in self._parts.items():
                for batch in batches(groups.values(), MAX_PARTS):
                    packed, futures = combine(script.sha_bytes, batch)
                    calls.append((packed, futures, script))
            self._parts = {}
        return calls

    def _loop(self) -> asyncio.AbstractEventLoop:
        # asyncio.get_running_loop() makes a getpid() system call (to notice a fork) every time: the connected
        # protocol knows its loop.
        protocol = self._protocol
        return protocol.loop if protocol is not None else asyncio.get_running_loop()

    # -- sending --------------------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_soon = None
        if len(self._inflight) >= IN_FLIGHT or not (self._queue or self._parts):
            return  # a batch coming back sends the queue
        protocol = self._protocol
        if protocol is None:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        self._write(protocol, self._take_queue())

    def _write(self, protocol: WireProtocol, calls: list[_Call], *, retrying: bool = False) -> None:
        self.round_trips += 1
        loop = protocol.loop
        now = loop.time()
        if now >= self._sample_at:
            self._sample_at = now + CLOCK_SAMPLE_S
            sample: asyncio.Future[Any] = loop.create_future()
            sample.add_done_callback(self._sampled)
            calls.append((TIME, sample, None))
        self._inflight.append(_Batch(calls, now, retrying))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout_s, self._watch)
        # The moment on Redis's clock past which this batch's script calls do nothing: the callers give up then.
        deadline = b"%d" % (int((now + self.timeout_s) * 1_000_000) + self._offset_us)
        late = b"$%d\r\n%s\r\n" % (len(deadline), deadline)
        items: list[bytes] = []
        for packed, target, script in calls:
            items.append(packed)
            if script is not None and target is not None:
                items.append(late)
        try:
            protocol.transport.write(b"".join(items))
        except Exception as exc:  # a closing transport: the batch fails now rather than at its deadline
            self._fail(exc)

    def _sampled(self, sample: asyncio.Future[Any]) -> None:
        if not sample.cancelled() and sample.exception() is None:
            self._offset_us = clock_offset(sample.result(), self._loop().time())

    def _watch(self) -> None:
        """Each batch gets ``timeout_s`` in all (one deadline per batch, not one per reply)."""
        self._watchdog = None
        if not self._inflight or self._protocol is None:
            return
        loop = self._protocol.loop
        left = self._inflight[0].sent_at + self.timeout_s - loop.time()
        if left > 0:
            self._watchdog = loop.call_later(left, self._watch)
        else:
            self._fail(TimeoutError(f"no reply from Redis within {self.timeout_s:g} s"))

    async def _connect(self) -> None:
        """Open the connection for the calls queued while there was none (the breaker being closed)."""
        try:
            try:
                protocol, offset = await self._endpoint.open(self, self.timeout_s)
            except (OSError, TimeoutError) as exc:
                self._fail(exc)
                return
            self._opened(protocol, offset)
            self._flush()
        finally:
            self._connecting = None

    def _opened(self, protocol: WireProtocol, offset_us: int) -> None:
        self._protocol = protocol
        self._offset_us = offset_us
        self._sample_at = protocol.loop.time() + CLOCK_SAMPLE_S

    # -- receiving ------------------------------------------------------------------------------------------

    def received(self, protocol: WireProtocol) -> None:
        """Replies arrived on ``protocol`` (for :class:`WireProtocol`)."""
        if protocol is not self._protocol:
            return  # a connection given up on
        try:
            self._received(protocol.reader)
        except Exception as exc:  # garbage from the server (hiredis.ProtocolError), or a bug: no caller hangs
            self._fail(exc)

    def _received(self, reader: hiredis.Reader) -> None:
        replies = self._replies
        while (reply := reader.gets()) is not False:
            replies.append(reply)
        inflight = self._inflight
        retry: list[_Call] = []
        done = False
        while inflight and len(replies) >= len(inflight[0].calls):
            # Callers resume together once their whole batch is in, not as TCP splits it: their next calls then
            # go out together too, and concurrent loads of one counter see one another.
            batch = inflight.popleft()
            count = len(batch.calls)
            if len(replies) == count:
                mine, replies = replies, []
            else:
                mine, replies = replies[:count], replies[count:]
            self._replies = replies
            self._resolve(batch, mine, retry)
            done = True
        if replies and not inflight:
            self._fail(ConnectionError("Redis sent a reply nobody asked for"))
            return
        if not done:
            return
        protocol = self._protocol
        assert protocol is not None  # it is the one receiving
        if retry:
            # Load each missing script, then send its calls again: one write, one more round trip.
            scripts = {script.name: script for _, _, script in retry if script is not None}
            loads: list[_Call] = [(script.load_command, None, script) for script in scripts.values()]
            self._write(protocol, loads + retry, retrying=True)
        if (self._queue or self._parts) and len(inflight) < IN_FLIGHT and self._flush_soon is None:
            self._write(protocol, self._take_queue())

    def _resolve(self, batch: _Batch, replies: list[Any], retry: list[_Call]) -> None:
        """Hand a batch's replies to their callers."""
        for call, reply in zip(batch.calls, replies, strict=True):
            target = call[1]
            if target is None:
                continue  # a SCRIPT LOAD's digest (or error: its calls then fail as NOSCRIPT)
            if isinstance(reply, hiredis.ReplyError):
                if not batch.retrying and str(reply).startswith("NOSCRIPT"):
                    retry.append(call)
                    continue
                if str(reply).startswith("LATE"):
                    self._sample_at = 0.0  # Redis's clock may have jumped: read it again with the next batch
                self._failed(call, reply)
            elif type(target) is list:
                if type(reply) is not list or len(reply) != len(target):
                    self._failed(call, ConnectionError("a batched script call answered for a different batch"))
                    continue
                for future, part in zip(target, reply, strict=True):
                    if not future.done():  # done: its caller was cancelled
                        future.set_result(part)
            elif not target.done():  # type: ignore[union-attr]
                target.set_result(reply)  # type: ignore[union-attr]

    def _failed(self, call: _Call, reason: Exception) -> None:
        what = f"script {call[2].name}" if call[2] is not None else "command"
        for future in _futures(call):
            if not future.done():
                self.errors += 1
                failure = RedisUnavailable(f"Redis {what} failed: {reason}")
                failure.__cause__ = reason
                future.set_exception(failure)

    def lost(self, protocol: WireProtocol, exc: BaseException | None) -> None:
        """``protocol``'s connection closed (for :class:`WireProtocol`)."""
        if protocol is not self._protocol:
            return
        self._protocol = None  # an idle connection that closed is opened again by the next call
        if self._inflight:
            self._fail(exc or ConnectionError("Redis closed the connection"))

    # -- failing and recovering -----------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """The connection failed: every call in flight or waiting fails, the breaker opens, and probes begin."""
        self.errors += 1
        self.recovery.failed(exc)
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            with contextlib.suppress(Exception):  # already closing: nothing more to free
                protocol.transport.abort()  # replies may be left unread on it
        futures = self._pending()
        self._inflight, self._replies, self._queue, self._parts = deque(), [], [], {}
        for future in futures:
            if not future.done():
                future.set_exception(_translate(exc))

    def _pending(self) -> list[asyncio.Future[Any]]:
        """The futures of every call written or waiting to be."""
        calls = [call for batch in self._inflight for call in batch.calls] + self._queue
        futures = [future for call in calls for future in _futures(call)]
        return futures + [future for groups in self._parts.values() for g in groups.values() for future in g.futures]

    async def _reopen(self) -> bool:
        """A probe's try (for :class:`Recovery`): a new connection, handed to the calls unless it is not needed
        after all."""
        protocol, offset = await self._endpoint.open(self, self.timeout_s)
        if self._closed or not self.breaker.down or self._protocol is not None:
            protocol.transport.close()
            return False
        self._opened(protocol, offset)
        return True


def _futures(call: _Call) -> list[asyncio.Future[Any]]:
    target = call[1]
    if target is None:
        return []
    return target if type(target) is list else [target]  # type: ignore[list-item]


def _translate(exc: BaseException) -> RedisUnavailable:
    if isinstance(exc, RedisUnavailable):
        return exc
    error = RedisUnavailable(f"Redis unreachable: {type(exc).__name__}")
    error.__cause__ = exc
    return error
