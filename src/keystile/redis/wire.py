"""The wire under :class:`~keystile.redis.connection.RedisConnection`: RESP packing, batched script calls built
from groups of alike parts, the asyncio protocol that hands replies over as they arrive (parsed by hiredis), and
opening a connection within a deadline.

Every script call is packed without its last argument, its deadline on Redis's clock, which the connection adds
when it writes the call (see :mod:`keystile.redis.connection`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url

Arg = str | int | float | bytes

# A part of a batched script call: its keys as RESP bulk strings (see bulk), how many, its arguments likewise, how
# many.
Part = tuple[bytes, int, bytes, int]


class Owner(Protocol):
    """What the protocol reports to (the connection)."""

    def received(self, protocol: WireProtocol) -> None: ...
    def lost(self, protocol: WireProtocol, exc: BaseException | None) -> None: ...


class WireProtocol(asyncio.Protocol):
    """A connection to Redis: ``reader`` holds what arrived, and its owner hears of every arrival."""

    transport: asyncio.Transport

    def __init__(self, owner: Owner, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.reader = hiredis.Reader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is one without subclassing asyncio.Transport, so no isinstance check).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.owner.received(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.lost(self, exc)


class _Opening:
    """The owner of a connection until Redis has answered its handshake and a ``TIME``: ``answered`` is then
    the ``TIME`` reply (or the error that ended the connection)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.answered: asyncio.Future[Any] = loop.create_future()
        self._expected = expected

    def received(self, protocol: WireProtocol) -> None:
        answered = self.answered
        try:
            while not answered.done() and (reply := protocol.reader.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    answered.set_exception(ConnectionError(f"Redis refused the connection: {reply}"))
                    return
                self._expected -= 1
                if self._expected == 0:
                    answered.set_result(reply)
        except hiredis.ProtocolError as exc:
            answered.set_exception(ConnectionError(f"the server does not speak Redis's protocol: {exc}"))

    def lost(self, protocol: WireProtocol, exc: BaseException | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(exc or ConnectionError("Redis closed the connection"))


class Endpoint:
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

    async def open(self, owner: Owner, timeout_s: float) -> tuple[WireProtocol, int]:
        """Connect, send the handshake and a ``TIME``, and wait for Redis to answer them, all within
        ``timeout_s``; then hand the connection over to ``owner``. Returns it with Redis's clock minus the loop's,
        in microseconds, as of the answer.

        Raises OSError (ConnectionError when Redis refuses the handshake or closes) or TimeoutError.
        """
        loop = asyncio.get_running_loop()
        opening = _Opening(loop, len(self.handshake) + 1)
        protocol: WireProtocol | None = None
        try:
            async with asyncio.timeout(timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: WireProtocol(opening, loop),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                )
                protocol.transport.write(b"".join([*self.handshake, TIME]))
                reply = await opening.answered
                if protocol.transport.is_closing():  # answered, then closed before this task resumed
                    raise ConnectionError("Redis closed the connection")
        except BaseException:
            if protocol is not None:
                protocol.transport.abort()
            raise
        protocol.owner = owner
        return protocol, clock_offset(reply, loop.time())


class Group:
    """Alike parts of a batched script call, sent once with their number."""

    __slots__ = ("futures", "part")

    def __init__(self, part: Part, futures: list[asyncio.Future[Any]]) -> None:
        self.part = part
        self.futures = futures


def batches(groups: Iterable[Group], most: int) -> Iterator[list[Group]]:
    """The groups in batches of at most ``most`` parts (a larger group cut in pieces)."""
    batch: list[Group] = []
    size = 0
    for group in groups:
        futures = group.futures
        pieces = (
            [group]
            if len(futures) <= most
            else [Group(group.part, futures[start : start + most]) for start in range(0, len(futures), most)]
        )
        for piece in pieces:
            if batch and size + len(piece.futures) > most:
                yield batch
                batch, size = [], 0
            batch.append(piece)
            size += len(piece.futures)
    if batch:
        yield batch


def combine(sha: bytes, groups: list[Group]) -> tuple[bytes, list[asyncio.Future[Any]]]:
    """One ``EVALSHA`` of a batching script from groups of parts (but its deadline), and the futures of its parts
    in reply order."""
    key_count = sum([group.part[1] for group in groups])
    count = 4 + key_count + sum([1 + group.part[3] for group in groups])
    keys = b"%d" % key_count
    items = [b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$%d\r\n%s\r\n" % (count, sha, len(keys), keys)]
    items += [group.part[0] for group in groups]
    futures: list[asyncio.Future[Any]] = []
    for group in groups:
        size = b"%d" % len(group.futures)
        items += (b"$%d\r\n%s\r\n" % (len(size), size), group.part[2])
        futures += group.futures
    return b"".join(items), futures


def command(*items: bytes) -> bytes:
    """A RESP command of raw items."""
    return b"*%d\r\n" % len(items) + bulk(items)


def bulk(items: Sequence[bytes]) -> bytes:
    """Items as RESP bulk strings, one after the other."""
    return b"".join([b"$%d\r\n%s\r\n" % (len(item), item) for item in items])


def evalsha(sha: bytes, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """``EVALSHA`` as a RESP command, but its last argument: the deadline, which the connection adds."""
    items = [b"EVALSHA", sha, b"%d" % len(keys), *[key.encode() for key in keys], *map(encode, args)]
    return b"*%d\r\n" % (len(items) + 1) + bulk(items)


def clock_offset(reply: Any, at: float) -> int:
    """Redis's clock minus the loop's, in microseconds, from the reply to a ``TIME`` that arrived at loop time
    ``at``. It errs low, by up to the round trip: deadlines made with it come early on Redis's clock, never late."""
    seconds, micros = reply
    return int(seconds) * 1_000_000 + int(micros) - int(at * 1_000_000)


TIME = command(b"TIME")


def encode(value: Arg) -> bytes:
    """An argument as Redis receives it (an int or float as redis-py sends it)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return repr(value).encode()
