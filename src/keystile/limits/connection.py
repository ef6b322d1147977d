"""One Redis connection per process (SPEC L2): keys under a prefix, Lua scripts by EVALSHA, round trips shared.

One Redis call from asyncio costs more than a whole cached verification, so concurrent calls share round trips:
a call made while another round trip is in flight waits for it to end and then goes out with every other call
queued meanwhile, in one write. A script the server does not know (a restarted or flushed Redis) is loaded and
the calls that needed it are sent again, in one more round trip.

Script calls, the hot path, go over a connection of this module's own: an asyncio protocol that writes a batch
of commands packed beforehand (:func:`pack`) in one ``transport.write`` and hands each reply to its caller's
future straight from ``data_received``, parsed by hiredis. redis-py's client (``client``) serves the rest (ping,
publish) and the change bus; it costs several times more per call, which the hot path would feel.

Neither driver's exceptions leave this module: they become :class:`RedisUnavailable`, and each one opens a
circuit breaker for a short, growing backoff during which calls fail at once without touching the network, so
that a dead Redis costs the caller nothing; the first call after the backoff tries again, and a success closes
the breaker (recovery needs no restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import Sequence
from importlib import resources
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from keystile.core.clock import Clock
from keystile.errors import StorageError

# A Redis that does not answer within this long counts as down (a verification waits at most this long once,
# then the breaker answers for it).
TIMEOUT_S = 1.0
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0

Arg = str | int | float | bytes


class RedisUnavailable(StorageError):
    """Redis could not be reached, timed out, or failed a command; the driver's exception is the ``__cause__``."""

    code = "redis_unavailable"
    title = "Redis unavailable"


class Script:
    """A Lua script shipped in ``keystile/limits/lua/``, called by its SHA-1."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files("keystile.limits.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        self.sha_bytes = self.sha.encode()
        self.load_command = command(b"SCRIPT", b"LOAD", self.source.encode())


class Breaker:
    """Says whether Redis may be tried now: closed until a failure, then open for a backoff that doubles with
    each failure in a row (up to :data:`MAX_BACKOFF_S`)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._backoff = FIRST_BACKOFF_S
        self.retry_at = 0.0
        self.down = False

    def allows(self) -> bool:
        return not self.down or self._clock.monotonic() >= self.retry_at

    def failed(self) -> None:
        if self.down:
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
        self.down = True
        self.retry_at = self._clock.monotonic() + self._backoff

    def succeeded(self) -> None:
        self.down = False
        self._backoff = FIRST_BACKOFF_S

    def wait_ms(self) -> float:
        """How long until Redis is tried again (0 when it may be tried now)."""
        return max(0.0, (self.retry_at - self._clock.monotonic()) * 1000) if self.down else 0.0


# A command on its way: its packed bytes, the future of its caller and its script (a script call); no future and
# a script (that script's SCRIPT LOAD); neither (a command of the connection's handshake).
_Call = tuple[bytes, "asyncio.Future[Any] | None", Script | None]


class RedisConnection:
    """A client for ``url`` (``redis://`` or ``rediss://``) whose keys all start with ``prefix``.

    Counters (since start): ``round_trips`` (writes of a batch), ``calls`` (script calls; more than round trips
    when batched), ``errors`` (failed round trips and failed script calls).
    """

    def __init__(self, url: str, prefix: str, clock: Clock) -> None:
        self.prefix = prefix
        self.url = url
        self.clock = clock
        self.breaker = Breaker(clock)
        # No retries inside redis-py: a failure must reach the breaker at once, not after redis-py's backoff.
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self._endpoint = _Endpoint(url)
        self._queue: list[_Call] = []
        self._inflight: list[_Call] = []  # the batch whose replies are awaited; replies come in its order
        self._replies: list[Any] = []  # the replies of the batch in flight so far
        self._retry: list[_Call] = []  # calls of the batch in flight that found their script missing
        self._retrying = False  # the batch in flight sends such calls again: they get no third chance
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._flush_soon: asyncio.Handle | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._sent_at = 0.0
        self.round_trips = self.calls = self.errors = 0

    def key(self, name: str) -> str:
        return self.prefix + name

    @property
    def stats(self) -> dict[str, int]:
        return {"round_trips": self.round_trips, "calls": self.calls, "errors": self.errors}

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script, in one round trip with every other call waiting meanwhile; returns its reply.

        Raises :class:`RedisUnavailable` when Redis fails, or at once while the breaker is open.
        """
        return await self.submit(script, pack(script, keys, args))

    def submit(self, script: Script, packed: bytes) -> asyncio.Future[Any]:
        """Queue a script call packed by :func:`pack` (the hot path packs ahead of time); await the future for
        its reply.

        Raises :class:`RedisUnavailable` at once while the breaker is open; the future raises it when Redis fails.
        """
        if not self.breaker.allows():
            raise RedisUnavailable("Redis is unavailable; it will be tried again shortly")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((packed, future, script))
        if self._flush_soon is None and not self._inflight:
            # Not at once: every call made until the loop comes round again goes out in the same write.
            self._flush_soon = loop.call_soon(self._flush)
        return future

    # -- sending --------------------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_soon = None
        if self._inflight or not self._queue:
            return
        protocol = self._protocol
        if protocol is None:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        batch, self._queue = self._queue, []
        self._write(protocol, batch)

    def _write(self, protocol: _Protocol, batch: list[_Call], *, retrying: bool = False) -> None:
        self.round_trips += 1
        self.calls += len(batch)
        self._retrying = retrying
        self._inflight = batch
        loop = protocol.loop
        self._sent_at = loop.time()
        if self._watchdog is None:
            self._watchdog = loop.call_later(TIMEOUT_S, self._watch)
        try:
            protocol.transport.write(b"".join([packed for packed, _, _ in batch]))
        except Exception as exc:  # a closing transport: the batch fails now rather than at its deadline
            self._fail(exc)

    def _watch(self) -> None:
        """The batch in flight gets :data:`TIMEOUT_S` in all (one deadline per batch, not one per reply)."""
        self._watchdog = None
        if not self._inflight or self._protocol is None:
            return
        loop = self._protocol.loop
        left = self._sent_at + TIMEOUT_S - loop.time()
        if left > 0:
            self._watchdog = loop.call_later(left, self._watch)
        else:
            self._fail(TimeoutError(f"no reply from Redis within {TIMEOUT_S:g} s"))

    async def _connect(self) -> None:
        try:
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    protocol = await self._endpoint.connect(self)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                self._fail(exc)
                return
            self._protocol = protocol
            # The handshake goes first, in the same write as the calls queued while connecting.
            handshake: list[_Call] = [(packed, None, None) for packed in self._endpoint.handshake]
            self.calls -= len(handshake)
            self._queue[:0] = handshake
            self._flush()
        finally:
            self._connecting = None

    # -- receiving ------------------------------------------------------------------------------------------

    def _received(self, reader: hiredis.Reader) -> None:
        replies = self._replies
        while (reply := reader.gets()) is not False:
            replies.append(reply)
        inflight = self._inflight
        if len(replies) < len(inflight):
            return
        if len(replies) > len(inflight):
            self._fail(ConnectionError("Redis sent a reply nobody asked for"))
            return
        # Callers resume together once the whole batch is in, not as TCP splits it: their next calls then go
        # out together too, and concurrent loads of one counter see one another.
        self._replies = []
        for (packed, future, script), reply in zip(inflight, replies, strict=True):
            if future is None:
                if script is None and isinstance(reply, hiredis.ReplyError):
                    self._fail(ConnectionError(f"Redis refused the connection: {reply}"))
                    return
                continue  # a handshake's OK, or a SCRIPT LOAD's digest
            if isinstance(reply, hiredis.ReplyError):
                if not self._retrying and str(reply).startswith("NOSCRIPT"):
                    self._retry.append((packed, future, script))
                    continue
                if not future.done():
                    self.errors += 1
                    failure = RedisUnavailable(f"Redis script {script.name if script else '?'} failed: {reply}")
                    failure.__cause__ = reply
                    future.set_exception(failure)
            elif not future.done():  # done: its caller was cancelled
                future.set_result(reply)
        self._inflight = []
        self.breaker.succeeded()
        protocol = self._protocol
        assert protocol is not None  # it is the one receiving
        if self._retry:
            # Load each missing script, then send its calls again: one write, one more round trip.
            retry, self._retry = self._retry, []
            scripts = {script.name: script for _, _, script in retry if script is not None}
            loads: list[_Call] = [(script.load_command, None, script) for script in scripts.values()]
            self.calls -= len(loads) + len(retry)  # each call counts once, when first sent
            self._write(protocol, loads + retry, retrying=True)
        elif self._queue:
            batch, self._queue = self._queue, []
            self._write(protocol, batch)

    def _lost(self, protocol: _Protocol, exc: BaseException | None) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None  # an idle connection that closed is opened again by the next call
        if self._inflight:
            self._fail(exc or ConnectionError("Redis closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        """The connection failed: every call in flight or waiting fails, and the breaker opens."""
        self.errors += 1
        self.breaker.failed()
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            with contextlib.suppress(Exception):  # already closing: nothing more to free
                protocol.transport.abort()  # replies may be left unread on it
        calls = self._inflight + self._retry + self._queue
        self._inflight, self._replies, self._retry, self._queue = [], [], [], []
        for _, future, _ in calls:
            if future is not None and not future.done():
                future.set_exception(_translate(exc))

    # -- the rest -------------------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`RedisUnavailable` unless Redis answers."""
        try:
            await self.client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise _translate(exc) from exc

    async def publish(self, channel: str, payload: bytes) -> None:
        """Publish on a channel (not prefixed here); raises :class:`RedisUnavailable`."""
        try:
            await self.client.publish(channel, payload)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _translate(exc) from exc

    async def close(self) -> None:
        """Let the calls made so far finish (each within :data:`TIMEOUT_S`), then close both connections."""
        pending = [future for _, future, _ in (*self._inflight, *self._retry, *self._queue) if future is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
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
        await self.client.aclose()


class _Protocol(asyncio.Protocol):
    """The script calls' connection: replies go to :meth:`RedisConnection._received` as they arrive."""

    transport: asyncio.Transport

    def __init__(self, owner: RedisConnection, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.reader = hiredis.Reader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is one without subclassing asyncio.Transport, so no isinstance check).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.owner._protocol is not self:
            return  # a connection given up on
        self.reader.feed(data)
        try:
            self.owner._received(self.reader)
        except Exception as exc:  # garbage from the server (hiredis.ProtocolError), or a bug: no caller hangs
            self.owner._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self, exc)


class _Endpoint:
    """Where and how to connect, read from the URL as redis-py reads it (TLS options of ``rediss://`` included),
    and the handshake to send first (AUTH, SELECT)."""

    def __init__(self, url: str) -> None:
        options = parse_url(url)
        self.host: str = options.get("host", "localhost")
        self.port: int = int(options.get("port", 6379))
        self.ssl: ssl.SSLContext | None = None
        if options.get("connection_class") is SSLConnection:
            tls: dict[str, Any] = {name: value for name, value in options.items() if name.startswith("ssl_")}
            self.ssl = SSLConnection(host=self.host, port=self.port, **tls).ssl_context.get()
        handshake: list[bytes] = []
        password, username = options.get("password"), options.get("username")
        if password is not None:
            auth = (username, password) if username else (password,)
            handshake.append(command(b"AUTH", *(value.encode() for value in auth)))
        if int(options.get("db", 0)):
            handshake.append(command(b"SELECT", b"%d" % int(options["db"])))
        self.handshake = tuple(handshake)

    async def connect(self, owner: RedisConnection) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: _Protocol(owner, loop),
            self.host,
            self.port,
            ssl=self.ssl,
            server_hostname=self.host if self.ssl is not None else None,
        )
        return protocol


def command(*items: bytes) -> bytes:
    """A RESP command of raw items."""
    return b"*%d\r\n" % len(items) + b"".join([b"$%d\r\n%s\r\n" % (len(item), item) for item in items])


def pack(script: Script, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """``EVALSHA`` as a RESP command."""
    return command(b"EVALSHA", script.sha_bytes, b"%d" % len(keys), *[key.encode() for key in keys], *map(encode, args))


def encode(value: Arg) -> bytes:
    """An argument as Redis receives it (an int or float as redis-py sends it)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()


def _translate(exc: BaseException) -> RedisUnavailable:
    if isinstance(exc, RedisUnavailable):
        return exc
    error = RedisUnavailable(f"Redis unreachable: {type(exc).__name__}")
    error.__cause__ = exc
    return error
